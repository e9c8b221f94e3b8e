"""What runs only on a developer's machine or in tests, never inside an Airflow task: the embedded
stack and its processes, the supervisor, the Airflow REST client, the demo. Platform code never imports it."""
