# The platform image: the official Airflow 3.3 image plus this repo's pinned lock and training_lib.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/fraud/requirements.txt
RUN pip install --no-cache-dir -r /opt/fraud/requirements.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/fraud/
COPY --chown=airflow:root training_lib /opt/fraud/training_lib
RUN pip install --no-cache-dir --no-deps -e /opt/fraud
