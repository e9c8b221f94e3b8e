-- docker-compose.yaml: run once by the postgres image on an empty data volume, as the POSTGRES_USER role.
-- POSTGRES_DB creates the Airflow metadata database; this adds MLflow's backend store, owned by the same role:
-- the two databases the local distributed stack creates (training_lib.local.stack.POSTGRES_DATABASES).
CREATE DATABASE mlflow;
