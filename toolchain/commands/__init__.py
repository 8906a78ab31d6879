"""Click commands; each module owns one command and imports heavy libraries inside it."""
