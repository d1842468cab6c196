"""The report: its SQL, text, HTML and graphs."""
