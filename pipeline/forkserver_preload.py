"""Imported by the isolation fork server (pipeline.isolation.ISOLATION_PRELOAD): every plug-in registered once,
so each isolated child starts with them instead of importing them inside its first task's time limit."""
from core.registry import load_plugins

load_plugins()
