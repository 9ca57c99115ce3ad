#!/usr/bin/env bash
# Validates dist/k8s/*.yaml against Kubernetes' own OpenAPI schemas
# (kubernetes-validate from PyPI, strict: unknown fields are errors), and
# the install script's shell syntax. Installs the validator into a venv of
# its own under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/k8s-validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q "kubernetes-validate==1.37.0"
fi
"$venv/bin/kubernetes-validate" --strict --quiet dist/k8s/*.yaml
# The ConfigMap's install script parses as POSIX sh.
"$venv/bin/python" - <<'PY'
import subprocess, yaml
for doc in yaml.safe_load_all(open("dist/k8s/vtap.yaml")):
    if doc and doc["kind"] == "ConfigMap":
        subprocess.run(["sh", "-n"], input=doc["data"]["install.sh"], text=True, check=True)
        for k in ("conflist.template",):
            import json
            json.loads(doc["data"][k].replace("@", "x"))
PY
echo "k8s-validate: dist/k8s is valid"
