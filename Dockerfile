# Hutch: secret vault API server.
# The Python CI tests on (.ci/run; tests/test_docker.py keeps the two in step).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HUTCH_INSTANCE=/var/lib/hutch/instance HUTCH_BIND_ADDRESS=0.0.0.0 HUTCH_PORT=4884

RUN useradd --system --uid 10001 --home-dir /var/lib/hutch --create-home hutch
WORKDIR /src
COPY pyproject.toml setup.cfg README.md constraints.txt ./
COPY hutch ./hutch
# The exact versions CI tested (constraints.txt), not whatever is newest today.
RUN pip install -c constraints.txt . && rm -rf /src
COPY docker/entrypoint.sh /usr/local/bin/hutch-entrypoint

USER hutch
WORKDIR /var/lib/hutch
VOLUME /var/lib/hutch
EXPOSE 4884
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/.well-known/hutch-configuration' % os.environ.get('HUTCH_PORT', '4884'), timeout=4)"

# Boot is boring and idempotent: create what is missing, then serve (docker/entrypoint.sh).
ENTRYPOINT ["/bin/sh", "/usr/local/bin/hutch-entrypoint"]
