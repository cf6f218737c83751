"""zooeval's service surface: the CLI (cli.py and commands/), one cycle under the lock, the scheduler, the embedded
mongod, and the web pages and API (web/)."""
