"""The ``zooeval`` subcommands, one file per concern: the database, the catalogue (scrape, models, datasets), running
cycles, results and exports, card claims and cards. Each module lists its click commands in ``COMMANDS``;
service/cli.py adds them to the ``zooeval`` group (the web commands live with the web layer, service/web)."""
