"""Which explanation to trust: faithfulness (deletion, insertion, ROAD), localization against exact
phone timings, and the verdict table."""
