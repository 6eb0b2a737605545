# Production image: gunicorn serving the Flask app; the rule library ships inside the package.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 cds
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install . && mkdir -p /data && chown cds /data

USER cds
ENV CALCINOSIS_CDS_FEEDBACK_DB=/data/feedback.sqlite3
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["calcinosis-cds", "serve", "--host", "0.0.0.0", "--port", "8080"]
