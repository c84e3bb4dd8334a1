"""Where things live on the server: the job bucket, its stream, and one key per job.

One key-value bucket, ``<prefix>_jobs``, holds every job record of an app, so one atomic batch
can change several records at once (a child and its parent, a claim and the flow records it
spends). Its keys are namespaced by their first token: ``j.<id>`` for jobs, ``w.<id>`` for the
worker registry, ``q.<queue>`` and ``t.<task>`` for flow control (a queue's settings and token
bucket, a task's token bucket) and ``u.<key>`` for the holder of a unique key
(:mod:`asynctask.brokers.nats.flowrecords`).

Job ids may hold any printable ASCII character, NATS keys only ``[-/_=.a-zA-Z0-9]``: every other
character (the ``.`` token separator and ``=`` itself included) is written ``=XX`` in hex, so the
mapping is one to one and a job key is always a single subject token.

>>> layout = Layout("myapp")
>>> layout.key("report:2026-01-01")
'j.report=3A2026-01-01'
>>> layout.subject("a.b")
'$KV.myapp_jobs.j.a=2Eb'
>>> layout.job_id("j.report=3A2026-01-01")
'report:2026-01-01'
"""

from __future__ import annotations

import hashlib
import re
import string

from asynctask.errors import InvalidName

__all__ = [
    "DEFAULT_PREFIX",
    "JOB_PREFIX",
    "QUEUE_PREFIX",
    "TASK_PREFIX",
    "UNIQUE_PREFIX",
    "WORKER_PREFIX",
    "Layout",
    "validate_prefix",
]

DEFAULT_PREFIX = "asynctask"
#: The first token of every job key.
JOB_PREFIX = "j."
#: The first token of every worker-registry key (:mod:`asynctask.brokers.nats.workers`).
WORKER_PREFIX = "w."
#: First tokens of the flow-control records: a queue's, a task's, a unique key's.
QUEUE_PREFIX = "q."
TASK_PREFIX = "t."
UNIQUE_PREFIX = "u."
#: Unique keys longer than this (escaped) are stored under their digest: a subject stays short.
_LONGEST_KEY = 200

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
_SAFE = frozenset(string.ascii_letters + string.digits + "-_")
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def validate_prefix(prefix: str) -> str:
    """A prefix becomes part of stream and bucket names: letters, digits, ``_`` and ``-``."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidName(
            f"invalid NATS prefix {prefix!r}: use 1-48 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return prefix


class Layout:
    """Names of the bucket, its stream and subjects for one ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = validate_prefix(prefix)
        #: The key-value bucket of job records.
        self.bucket = f"{prefix}_jobs"
        #: The stream behind the bucket (JetStream's naming for key-value buckets).
        self.stream = f"KV_{self.bucket}"
        #: Subjects of every record in the bucket.
        self.all_subjects = f"$KV.{self.bucket}.>"
        self._subject_prefix = f"$KV.{self.bucket}."

    def __repr__(self) -> str:
        return f"<Layout bucket={self.bucket}>"

    def key(self, job_id: str) -> str:
        """The bucket key of a job."""
        return JOB_PREFIX + _escape(job_id)

    def worker_subject(self, worker_id: str) -> str:
        """The stream subject of a worker's record in the registry."""
        return self._subject_prefix + WORKER_PREFIX + _escape(worker_id)

    @property
    def worker_subjects(self) -> str:
        """The subjects of every worker record."""
        return self._subject_prefix + WORKER_PREFIX + ">"

    def subject(self, job_id: str) -> str:
        """The stream subject of a job's record."""
        return self._subject_prefix + self.key(job_id)

    def record_subject(self, key: str) -> str:
        """The stream subject of any bucket key (a flow record's, say)."""
        return self._subject_prefix + key

    @staticmethod
    def queue_key(queue: str) -> str:
        """The key of a queue's flow record (its settings and token bucket)."""
        return QUEUE_PREFIX + _escape(queue)

    @staticmethod
    def task_key(task: str) -> str:
        """The key of a task's flow record (its token bucket)."""
        return TASK_PREFIX + _escape(task)

    @staticmethod
    def unique_key(key: str) -> str:
        """The key of the record naming the job that took unique key ``key``."""
        escaped = _escape(key)
        if len(escaped) > _LONGEST_KEY:
            escaped = "h-" + hashlib.sha256(key.encode()).hexdigest()
        return UNIQUE_PREFIX + escaped

    @staticmethod
    def name_of(key: str) -> str:
        """The name (queue, task, job id) a key was made from: its first token dropped, unescaped."""
        encoded = key.partition(".")[2]
        if "=" not in encoded:
            return encoded
        return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), encoded)

    def key_of(self, subject: str) -> str | None:
        """The bucket key of a stream subject, or ``None`` for a subject outside the bucket."""
        if not subject.startswith(self._subject_prefix):
            return None
        return subject[len(self._subject_prefix) :]

    @staticmethod
    def job_id(key: str) -> str | None:
        """The job id of a bucket key, or ``None`` for a key that is not a job's."""
        if not key.startswith(JOB_PREFIX):
            return None
        return Layout.name_of(key)


def _escape(name: str) -> str:
    """``name`` as one subject token: ``=XX`` for every character outside ``[-_a-zA-Z0-9]``."""
    if _PLAIN.fullmatch(name):  # most ids (uuids) need no escaping
        return name
    return "".join(c if c in _SAFE else f"={ord(c):02X}" for c in name)
