FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
EXPOSE 8090
# The config is mounted at /app/configs (see docker-compose.yml).
CMD ["python", "open-api.py", "--config", "configs/model_config.yaml", "--host", "0.0.0.0", "--port", "8090"]
