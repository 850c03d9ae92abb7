# posegen's API and worker image (one image, two commands): the core plus the S3 client.
# Build: docker build -t posegen .   (compose.yaml builds it too)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[s3]' \
 && useradd --create-home --uid 10001 posegen \
 && mkdir -p /data && chown posegen /data
USER posegen
# Only the per-host map cache and scratch files live here; results and uploads go to the bucket.
ENV POSEGEN_DATA_DIR=/data
EXPOSE 8000
ENTRYPOINT ["posegen"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
