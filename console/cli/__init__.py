"""`facet`, the command-line client of the console's REST API, in the ncli style `facet NOUN VERB key=value`.

Standard library only, and nothing here imports Django: it runs on administrators' laptops.
`main.py` parses and dispatches, `commands.py` holds the table of nouns and verbs, `client.py` speaks
HTTP and keeps the credentials, `values.py` reads and writes sizes and booleans, `output.py` draws tables,
records and the task progress bar, `errors.py` maps every failure to its exit code."""
