# pyginx in a container: serves html/ with conf/pyginx.yaml's static site on port 8080.
#   docker build -t pyginx . && docker run --rm -p 8080:8080 pyginx
# The master stays in the foreground (daemon off) as the container's main process; `docker stop`
# sends SIGQUIT (graceful: in-flight requests finish), `docker kill -s HUP` reloads.
FROM python:3.11-slim

WORKDIR /opt/pyginx
COPY pyproject.toml README.md ./
COPY pyginx ./pyginx
RUN pip install --no-cache-dir . && mkdir -p logs
COPY html ./html
COPY conf/docker.yaml ./conf/pyginx.yaml

EXPOSE 8080
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')"
CMD ["pyginx", "-p", "/opt/pyginx", "-c", "conf/pyginx.yaml"]
