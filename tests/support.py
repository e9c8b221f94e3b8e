"""Helpers the test modules share (plain functions; the fixtures built on them live in conftest.py)."""

from __future__ import annotations

from collections.abc import Mapping

from training_lib.config import Settings, load_settings
from training_lib.lake.objects import ensure_bucket
from training_lib.lake.storage import Lake


def moto_settings(endpoint: str, bucket: str, env: Mapping[str, str] | None = None) -> Settings:
    """Platform settings for ``bucket`` on a test's moto S3 server (the bucket is created); ``env``: more
    settings by their environment variable names."""
    settings = load_settings({"FRAUD_S3_ENDPOINT_URL": endpoint, "FRAUD_BUCKET": bucket, **(env or {})})
    ensure_bucket(settings)
    return settings


def drop_bucket(settings: Settings) -> None:
    """Delete every object of the settings' bucket, then the bucket."""
    lake = Lake(settings)
    lake.delete_keys(lake.list_keys(""))
    lake.client.delete_bucket(Bucket=settings.bucket)


# The first two rows of the public fraudTrain.csv, byte for byte (its index column has an empty name).
KAGGLE = (
    b",trans_date_trans_time,cc_num,merchant,category,amt,first,last,gender,street,city,state,zip,lat,long,"
    b"city_pop,job,dob,trans_num,unix_time,merch_lat,merch_long,is_fraud\n"
    b'0,2019-01-01 00:00:18,2703186189652095,"fraud_Rippin, Kub and Mann",misc_net,4.97,Jennifer,Banks,F,'
    b'561 Perry Cove,Moravian Falls,NC,28654,36.0788,-81.1781,3495,"Psychologist, counselling",1988-03-09,'
    b"0b242abb623afc578575680df30655b9,1325376018,36.011293,-82.048315,0\n"
    b'1,2019-01-01 00:00:44,630423337322,"fraud_Heller, Gutmann and Zieme",grocery_pos,107.23,Stephanie,Gill,F,'
    b"43039 Riley Greens Suite 393,Orient,WA,99160,48.8878,-118.2105,149,Special educational needs teacher,"
    b"1978-06-21,1f76529f8574734946361c461b024d99,1325376044,49.159047,-118.186462,0\n"
)
