"""Operations on the cluster as plain functions: views, the API, the CLI and Celery tasks call these."""
