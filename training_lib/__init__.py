"""Card-fraud MLOps platform: all logic, importable, no Airflow imports."""
