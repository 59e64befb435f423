#!/usr/bin/env python3
"""Render a kustomization without kustomize or kubectl: the subset k8s/ uses.

    python3 scripts/k8s_render.py k8s/overlays/production > rendered.yaml

Supported (anything else in a kustomization.yaml is an error, never silently ignored):
  resources          files, or directories holding a kustomization.yaml (rendered first)
  namespace          set on every object
  configMapGenerator name + files ("path" or "key=path") + literals ("key=value"); the name
                     gets kustomize's content hash suffix and every reference in a pod spec
                     (volumes, env valueFrom, envFrom) is rewritten to it
  images             name -> newName / newTag / digest, on containers and initContainers
  replicas           name -> count, on Deployments and StatefulSets
  patches            path: a strategic-merge patch applied to the object of the same kind and
                     name (lists of containers, env, volumes, ... merge by their key; other
                     lists are replaced, as kustomize does for them)

Needs PyYAML (the venv scripts/validate-k8s.sh makes has it). Output: the objects as one YAML
stream, in the order kustomize emits them for this repo (ConfigMaps last in their
kustomization, overlays after their bases), which does not matter to the validation.
"""

import hashlib
import json
import os
import sys

import yaml

KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "configMapGenerator",
    "images",
    "replicas",
    "patches",
}

# Strategic-merge keys of the lists k8s/ patches (from the Kubernetes API's patchMergeKey).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,  # replaced
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    pass


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def go_json(value):
    """json.Marshal's bytes: sorted keys, no spaces, HTML-safe escapes, raw UTF-8."""
    s = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s


def configmap_hash(data):
    """kustomize's name suffix (api/hasher): sha256 of the encoded ConfigMap, first 10 hex
    digits with 0, 1, 3, a, e swapped for letters so the suffix never reads as a number.
    kustomize 5 hashes before the name is set, so the encoded name is empty (checked against
    `kubectl kustomize`, kustomize v5.5.0)."""
    encoded = go_json({"data": data, "kind": "ConfigMap", "name": ""})
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def generate_configmap(base, spec):
    unknown = set(spec) - {"name", "files", "literals"}
    if unknown:
        raise RenderError(f"configMapGenerator {spec.get('name')}: unsupported {sorted(unknown)}")
    data = {}
    for entry in spec.get("files", []):
        key, _, path = entry.partition("=") if "=" in entry else (None, None, entry)
        full = os.path.normpath(os.path.join(base, path))
        if not full.startswith(os.path.normpath(base) + os.sep):
            raise RenderError(f"{entry}: outside the kustomization directory {base}")
        with open(full, encoding="utf-8") as f:
            data[key or os.path.basename(path)] = f.read()
    for entry in spec.get("literals", []):
        key, sep, value = entry.partition("=")
        if not sep:
            raise RenderError(f"literal {entry!r} is not key=value")
        data[key] = value
    name = spec["name"]
    return name, {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-{configmap_hash(data)}"},
        "data": data,
    }


def merge(target, patch, field=None):
    """Strategic merge of `patch` into `target` (both plain YAML values)."""
    if isinstance(target, dict) and isinstance(patch, dict):
        out = dict(target)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = v
        return out
    if isinstance(target, list) and isinstance(patch, list):
        key = MERGE_KEYS.get(field)
        if key and all(isinstance(i, dict) and key in i for i in target + patch):
            # Items only in the patch come first, as kustomize (kyaml) orders them.
            out = list(target)
            new = []
            for item in patch:
                for i, existing in enumerate(out):
                    if existing[key] == item[key]:
                        out[i] = merge(existing, item)
                        break
                else:
                    new.append(item)
            return new + out
        return patch
    return patch


def pod_specs(obj):
    spec = obj.get("spec", {})
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec.get("template", {}).get("spec", {})
    elif obj.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif obj.get("kind") == "Pod":
        yield spec


def rename_configmaps(objects, names):
    for obj in objects:
        for pod in pod_specs(obj):
            for vol in pod.get("volumes", []):
                cm = vol.get("configMap")
                if cm and cm.get("name") in names:
                    cm["name"] = names[cm["name"]]
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("configMapKeyRef")
                    if ref and ref.get("name") in names:
                        ref["name"] = names[ref["name"]]
                for src in c.get("envFrom", []):
                    ref = src.get("configMapRef")
                    if ref and ref.get("name") in names:
                        ref["name"] = names[ref["name"]]


def set_image(container, images):
    image = container.get("image", "")
    name, tag = image, None
    if "@" in name:
        name = name.split("@", 1)[0]
    elif ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    for img in images:
        if img["name"] != name:
            continue
        new = img.get("newName", name)
        if "digest" in img:
            container["image"] = f"{new}@{img['digest']}"
        else:
            t = img.get("newTag", tag)
            container["image"] = f"{new}:{t}" if t else new


def render(directory):
    directory = os.path.normpath(directory)
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.exists(path):
        raise RenderError(f"no kustomization.yaml in {directory}")
    (k,) = load_docs(path)
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{path}: unsupported fields {sorted(unknown)}")
    objects = []
    for res in k.get("resources", []):
        full = os.path.join(directory, res)
        if os.path.isdir(full):
            objects.extend(render(full))
        else:
            objects.extend(load_docs(full))
    generated = {}
    for spec in k.get("configMapGenerator", []):
        name, cm = generate_configmap(directory, spec)
        generated[name] = cm["metadata"]["name"]
        objects.append(cm)
    rename_configmaps(objects, generated)
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            raise RenderError(f"{path}: only `patches: - path:` is supported, got {p}")
        for patch in load_docs(os.path.join(directory, p["path"])):
            kind, name = patch["kind"], patch["metadata"]["name"]
            matches = [i for i, o in enumerate(objects)
                       if o["kind"] == kind and o["metadata"]["name"] == name]
            if len(matches) != 1:
                raise RenderError(f"patch {p['path']}: {len(matches)} objects {kind}/{name}")
            objects[matches[0]] = merge(objects[matches[0]], patch)
    for r in k.get("replicas", []):
        hits = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                and o["metadata"]["name"] == r["name"]]
        if not hits:
            raise RenderError(f"replicas: no Deployment or StatefulSet {r['name']}")
        for o in hits:
            o["spec"]["replicas"] = r["count"]
    images = k.get("images", [])
    for obj in objects:
        for pod in pod_specs(obj):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                set_image(c, images)
    if "namespace" in k:
        for obj in objects:
            obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        objects = render(argv[1])
    except (RenderError, OSError, KeyError, ValueError, yaml.YAMLError) as e:
        print(f"k8s_render: {argv[1]}: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
