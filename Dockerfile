# The platform image of docker-compose.yaml: the official Airflow image (the Airflow version the lock pins)
# plus this repo's lock, training_lib, and the DAGs, plugins and include files baked in under /opt/fraud, the
# project root as training_lib sees it there. Every container (scheduler, DAG processor, each Celery worker)
# runs the same code; nothing is mounted from the host. Rebuild to deploy a change.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/fraud/requirements.txt
RUN pip install --no-cache-dir -r /opt/fraud/requirements.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/fraud/
COPY --chown=airflow:root training_lib /opt/fraud/training_lib
RUN pip install --no-cache-dir --no-deps -e /opt/fraud
# Mount points of docker-compose.yaml's named volumes, created by the airflow user so new volumes are writable;
# the simple auth manager's generated passwords file (its default path) is kept on the airflow-auth volume.
RUN mkdir -p /opt/airflow/logs /opt/airflow/auth \
    && ln -s /opt/airflow/auth/simple_auth_manager_passwords.json.generated \
        /opt/airflow/simple_auth_manager_passwords.json.generated
COPY --chown=airflow:root include /opt/fraud/include
COPY --chown=airflow:root plugins /opt/fraud/plugins
COPY --chown=airflow:root dags /opt/fraud/dags
