"""zooeval's service surface: the CLI, one cycle under the lock, the scheduler and the embedded mongod."""
