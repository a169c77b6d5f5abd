#!/usr/bin/env bash
# CI: the Kubernetes manifests against the API schemas of the Kubernetes versions we
# support, strictly (unknown fields are errors), with a validator this script installs.
# Their agreement with the service's shutdown is tested in tests/api/deploy.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${K8S_VALIDATE_VENV:-target/k8s-validate}
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
# The Kustomization is not a cluster resource; check what it lists instead.
manifests=$(sed -n 's/^  - \([a-z-]*\.yaml\).*/deploy\/k8s\/\1/p' deploy/k8s/kustomization.yaml)
for f in $manifests; do [ -f "$f" ] || { echo "k8s: kustomization.yaml lists $f, which is missing" >&2; exit 1; }; done
for version in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" $manifests deploy/k8s/secret.example.yaml
  echo "k8s: $(echo $manifests | wc -w) manifests + the example Secret are valid for Kubernetes $version (strict)"
done
