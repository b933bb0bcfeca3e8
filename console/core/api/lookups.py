"""How the API's URLs name an object: by its UUID, written in full (8-4-4-4-12 hex digits), so that anything
else is a 404 before a query is made (36 hex digits without dashes once reached the database as a bad UUID)."""

UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
