# Sourced by the cluster benchmark scripts: the hub's abuse limits lifted for a load harness (many
# accounts and connections from one address; SECURITY.md lists them), and free_port.
export HUB_LIMIT_REGISTER_PER_IP=100000/h HUB_LIMIT_AUTH_PER_IP=100000/min \
  HUB_LIMIT_WRITE_PER_USER=100000/s+100000 HUB_LIMIT_WRITE_PER_IP=100000/s+100000 \
  HUB_LIMIT_READ_PER_IP=100000/s+100000 HUB_LIMIT_READ_PER_USER=100000/s+100000 \
  HUB_QUOTA_WORKSPACES_PER_HOUR=100000 HUB_MAX_CONNS_PER_USER=1000000 HUB_MAX_CONNS_PER_IP=1000000 \
  HUB_LIMIT_REGISTER_PER_EMAIL=100000/h HUB_LIMIT_SYNC_PER_USER=100000/s+100000
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
