"""zooeval's orchestration: planning (one indexed query), the task-agnostic executor, isolation and back-off."""
