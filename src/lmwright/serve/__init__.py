"""Serving: the inference engine, the OpenAI-compatible API server and the chat page."""
