"""Web views for people and a service API for programs, in one process (``zooeval serve``); the same templates
write a static site (``zooeval report``). See service.web.app."""
