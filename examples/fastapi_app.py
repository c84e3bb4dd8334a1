"""A FastAPI service that publishes jobs from an endpoint and runs them in an embedded worker.

pip install -e ".[fastapi]" uvicorn
uvicorn examples.fastapi_app:api

curl -X POST 'localhost:8000/thumbnails?url=https://example.com/cat.png'
curl localhost:8000/jobs/<id>
"""

from __future__ import annotations

import os

import msgspec
from fastapi import FastAPI, HTTPException

from asynctask import App, JobCtx
from asynctask.contrib.fastapi import lifespan

jobs = App(os.environ.get("ASYNCTASK_BROKER_URL", "memory://"))


class Thumbnail(msgspec.Struct):
    url: str
    width: int


@jobs.task(max_retries=3, timeout=30)
async def make_thumbnail(ctx: JobCtx, url: str) -> Thumbnail:
    return Thumbnail(url=url.replace(".png", ".thumb.png"), width=128)


api = FastAPI(lifespan=lifespan(jobs, worker=True, concurrency=10))


@api.post("/thumbnails", status_code=202)
async def create_thumbnail(url: str) -> dict[str, str]:
    handle = await make_thumbnail.publish(url)
    return {"job_id": handle.id}


@api.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, object]:
    job = await jobs.get_job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="no such job")
    result = msgspec.to_builtins(jobs.decode_result(job)) if job.has_result else None
    return {"id": job.id, "status": job.status.value, "attempts": job.attempts, "result": result}
