"""EvaluationModules: one per (model source x task x dataset); loading and inference only."""
