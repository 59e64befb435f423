#!/usr/bin/env bash
# Offline validation of k8s/: render every kustomization (k8s/base, k8s/overlays/*) and check
# every object against the Kubernetes JSON schemas of one fixed version, strictly (unknown
# fields are errors). Nothing is fetched at run time: kubernetes-validate (PyPI) bundles its
# schemas, and rendering is scripts/k8s_render.py (no kustomize needed; when kubectl is on
# the PATH its built-in kustomize renders too and the two must agree).
#
#   scripts/validate-k8s.sh                 validate (installs kubernetes-validate once into
#                                           target/k8s-venv; later runs reuse it)
#   scripts/validate-k8s.sh --self-test     also prove broken manifests fail
#   scripts/validate-k8s.sh --sync-prompts  refresh k8s/base/prompts/ from prompts/
#
# Exit status: 0 when every object is valid, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.30.0            # the oldest Kubernetes we support: preStop `sleep` needs 1.30
KV_VERSION=1.37.0             # kubernetes-validate, pinned
VENV=target/k8s-venv
OUT=target/k8s-rendered

self_test=false
case "${1:-}" in
  "") ;;
  --self-test) self_test=true ;;
  --sync-prompts)
    rm -f k8s/base/prompts/*
    cp prompts/prompts.lock k8s/base/prompts/
    for f in prompts/*/*.toml; do
      stage=$(basename "$(dirname "$f")")
      cp "$f" "k8s/base/prompts/${stage}__$(basename "$f")"
    done
    echo "k8s/base/prompts/ refreshed; list new files in k8s/base/kustomization.yaml and deployment.yaml"
    exit 0 ;;
  *) echo "usage: $0 [--self-test | --sync-prompts]" >&2; exit 2 ;;
esac

if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KV_VERSION"; then
  echo "installing kubernetes-validate $KV_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi
PY="$VENV/bin/python"
mkdir -p "$OUT"
fail=0

# The prompts ConfigMap is built from a copy (kustomize reads nothing outside k8s/base): it
# must be the repository's prompts, every file of it listed in the generator and mounted.
"$PY" - <<'EOF' || fail=1
import os, sys, yaml
repo = {"prompts.lock": "prompts/prompts.lock"}
for stage in sorted(os.listdir("prompts")):
    d = os.path.join("prompts", stage)
    if os.path.isdir(d) and not stage.startswith("."):
        for f in sorted(os.listdir(d)):
            if f.endswith(".toml"):
                repo[f"{stage}__{f}"] = os.path.join(d, f)
copy = {f for f in os.listdir("k8s/base/prompts")}
problems = []
for key, path in repo.items():
    mine = os.path.join("k8s/base/prompts", key)
    if not os.path.exists(mine) or open(mine, "rb").read() != open(path, "rb").read():
        problems.append(f"k8s/base/prompts/{key} differs from {path}")
problems += [f"k8s/base/prompts/{f} is not in prompts/" for f in sorted(copy - set(repo))]
k = yaml.safe_load(open("k8s/base/kustomization.yaml"))
gen = next(g for g in k["configMapGenerator"] if g["name"] == "grader-prompts")
listed = {os.path.basename(f.split("=")[-1]) for f in gen["files"]}
problems += [f"{key} missing from the grader-prompts configMapGenerator" for key in sorted(set(repo) - listed)]
dep = yaml.safe_load(open("k8s/base/deployment.yaml"))
vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "prompts")
items = {i["key"]: i["path"] for i in vol["configMap"]["items"]}
for key in repo:
    want = "prompts.lock" if key == "prompts.lock" else key.replace("__", "/", 1)
    if items.get(key) != want:
        problems.append(f"deployment.yaml: the prompts volume must map {key} to {want}")
for p in problems:
    print(f"ERROR {p}")
if problems:
    print("fix: scripts/validate-k8s.sh --sync-prompts, then list the files", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF

# Renders $1 into $2 (with kubectl's kustomize as a cross-check when present).
render() {
  local dir=$1 out=$2
  "$PY" scripts/k8s_render.py "$dir" > "$out" || return 1
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$dir" > "$out.kubectl" || { echo "ERROR kubectl kustomize $dir failed"; return 1; }
    "$PY" - "$out" "$out.kubectl" <<'EOF' || { echo "ERROR $dir: k8s_render.py and kubectl kustomize disagree"; return 1; }
import sys, yaml
key = lambda d: (d["kind"], d["metadata"]["name"])
a, b = ([d for d in yaml.safe_load_all(open(p)) if d] for p in sys.argv[1:3])
sys.exit(0 if sorted(a, key=key) == sorted(b, key=key) else 1)
EOF
  fi
}

# Validates every object of a rendered stream. kubernetes-validate exits non-zero on an
# invalid object but only warns (exit 0) about a kind it has no schema for, e.g. a misspelt
# one: here that fails too.
validate() {
  local log rc=0
  log=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$1" 2>&1) || rc=$?
  if [ -n "$log" ]; then echo "$log"; fi
  [ "$rc" = 0 ] && ! grep -q '^WARN' <<<"$log"
}

for dir in k8s/base k8s/overlays/*/; do
  dir=${dir%/}
  name=$(echo "$dir" | tr '/' '_')
  out="$OUT/$name.yaml"
  if ! render "$dir" "$out"; then
    echo "ERROR cannot render $dir"; fail=1; continue
  fi
  n=$(grep -c '^kind:' "$out" || true)
  if validate "$out"; then
    echo "ok   $dir: $n objects valid against Kubernetes $K8S_VERSION (strict)"
  else
    echo "FAIL $dir"; fail=1
  fi
done

if $self_test; then
  # Each broken variant of the rendered base must be rejected.
  base="$OUT/k8s_base.yaml"
  broken=0
  for case in unknown-field wrong-type missing-required unknown-kind; do
    "$PY" - "$base" "$OUT/broken-$case.yaml" "$case" <<'EOF'
import sys, yaml
src, dst, case = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
c = dep["spec"]["template"]["spec"]["containers"][0]
if case == "unknown-field":
    c["readinesProbe"] = c.pop("readinessProbe")      # a typo
elif case == "wrong-type":
    dep["spec"]["replicas"] = "two"
elif case == "missing-required":
    del c["name"]
elif case == "unknown-kind":
    next(d for d in docs if d["kind"] == "Service")["kind"] = "Servcie"
yaml.safe_dump_all(docs, open(dst, "w"))
EOF
    if validate "$OUT/broken-$case.yaml" >/dev/null 2>&1; then
      echo "FAIL self-test: the $case manifest was accepted"; broken=1
    else
      echo "ok   self-test: the $case manifest is rejected"
    fi
  done
  # A patch aimed at an object that does not exist must fail the render.
  tmp=$(mktemp -d)
  mkdir -p "$tmp/overlay"
  cp -r k8s/base "$tmp/base"
  printf 'resources:\n  - ../base\npatches:\n  - path: p.yaml\n' > "$tmp/overlay/kustomization.yaml"
  printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nope\n' > "$tmp/overlay/p.yaml"
  if "$PY" scripts/k8s_render.py "$tmp/overlay" >/dev/null 2>&1; then
    echo "FAIL self-test: a patch of a missing object rendered"; broken=1
  else
    echo "ok   self-test: a patch of a missing object fails the render"
  fi
  rm -rf "$tmp"
  [ "$broken" = 0 ] || fail=1
fi

exit "$fail"
