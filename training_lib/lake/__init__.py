"""The data lake on S3: keys and layout of every zone, atomic partition publishing, reports."""
