"""An example zooeval plug-in: one perturbation, one processor and one module kind, found through entry points."""
