"""asynctask: an asyncio-native distributed job queue."""
