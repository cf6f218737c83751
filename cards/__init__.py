"""Model cards: the claims a card's ``model-index`` makes (model_index), confidence intervals of stored
measurements (intervals), verdicts on the claims (verdicts), plain-language statements from the results
(statements), the enriched card zooeval writes (render) and the chapter-5 figures over many cards (summary).

Pure functions over claim records and stored result documents: this package imports only core and
third-party libraries; the service layer reads and writes the store around it."""
