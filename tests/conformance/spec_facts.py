"""Holding a served Swagger 2.0 spec to facts extracted from the real one (a contract file of this folder).

A contract file has `operations` (one entry per operation and snapshot: operationId, source, method, path,
parameters {name: {in, type, format?, items?, ref?}}, response) and `models` per source ({Model: {fields}} or
{enum}). `served_problems()` lists what a served spec has that no snapshot has: an operation, a method or
path, a parameter, its place or type, a response field or its type. An item passes if ONE snapshot has the
whole operation as served (snapshots are not mixed within one operation). Exemptions are keyed by the item's
name as reported and must carry their evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def load_contract(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())


def _served_param(p: dict[str, Any]) -> dict[str, Any]:
    schema = p.get("schema", p)
    if "$ref" in schema:
        return {"in": p["in"], "ref": schema["$ref"].rsplit("/", 1)[-1]}
    out = {"in": p["in"], "type": schema.get("type", "object")}
    if "format" in schema:
        out["format"] = schema["format"]
    return out


def _primitive_ok(served: dict[str, Any], real: dict[str, Any]) -> bool:
    if served.get("type") != real.get("type"):
        return False
    return "format" not in served or "format" not in real or served["format"] == real["format"]


class _Checker:
    def __init__(self, served_definitions: dict[str, Any], real_models: dict[str, Any], exemptions: dict[str, str]):
        self.served = served_definitions
        self.real = real_models
        self.exemptions = exemptions
        self.used: set[str] = set()

    def _resolve_served(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.served[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _resolve_real(self, fact: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        if "ref" in fact:
            name = fact["ref"]
            model = self.real.get(name, {"missing": True})
            if "enum" in model:
                return name, {"type": model["type"]}
            return name, model
        return None, fact

    def schema(self, where: str, served: dict[str, Any], real: dict[str, Any], depth: int = 0) -> list[str]:
        """What `served` (a served JSON schema) has that `real` (a contract descriptor) lacks."""
        served = self._resolve_served(served)
        model_name, real_model = self._resolve_real(real)
        if depth > 12 or real_model.get("missing"):
            return [f"{where}: the real model {model_name} is unknown"] if real_model.get("missing") else []
        served_type = served.get("type", "object")
        if "fields" in real_model:  # a real object model
            if served_type != "object":
                return [f"{where}: served as {served_type}, real is the object {model_name}"]
            problems = []
            for field, sub in served.get("properties", {}).items():
                key = f"{model_name}.{field}"
                if field not in real_model["fields"]:
                    if key in self.exemptions:
                        self.used.add(key)
                        continue
                    problems.append(f"{where}: field {key} is not in the real model")
                    continue
                found = self.schema(f"{where}.{field}", sub, real_model["fields"][field], depth + 1)
                if found and key in self.exemptions:
                    self.used.add(key)
                    continue
                problems += found
            return problems
        if real_model.get("type") == "array":
            if served_type != "array":
                return [f"{where}: served as {served_type}, real is an array"]
            return self.schema(f"{where}[]", served.get("items", {}), real_model["items"], depth + 1)
        if served_type == "object" and real_model.get("type") == "object":
            return []  # a free-form object on both sides
        if not _primitive_ok(served, real_model):
            return [
                f"{where}: served as {served_type}/{served.get('format')}, "
                f"real is {real_model.get('type')}/{real_model.get('format')}"
            ]
        return []


def _operation_problems(
    op_id: str, method: str, path: str, op: dict[str, Any], served_defs: dict[str, Any],
    variant: dict[str, Any], models: dict[str, Any], exemptions: dict[str, str],
) -> tuple[list[str], set[str]]:
    problems: list[str] = []
    used: set[str] = set()
    if (method.upper(), path) != (variant["method"], variant["path"]):
        key = f"{op_id} path"
        if key in exemptions:
            used.add(key)
        else:
            problems.append(f"{op_id}: served at {method.upper()} {path}, real {variant['method']} {variant['path']}")
    checker = _Checker(served_defs, models[variant["source"]], exemptions)
    for p in op.get("parameters", []):
        key = f"{op_id} parameter {p['name']}"
        real = variant["parameters"].get(p["name"])
        served = _served_param(p)
        if real is None:
            if key in exemptions:
                used.add(key)
            else:
                problems.append(f"{key}: not a parameter of the real operation")
            continue
        if served["in"] != real["in"]:
            problems.append(f"{key}: served in {served['in']}, real in {real['in']}")
        elif "ref" in served:
            problems += checker.schema(key, {"$ref": f"#/definitions/{served['ref']}"}, real)
        elif "ref" not in real and not _primitive_ok(served, real):
            problems.append(f"{key}: served as {served['type']}/{served.get('format')}, real {real['type']}/{real.get('format')}")
        elif "ref" in real and served["type"] != "object":
            problems.append(f"{key}: served as {served['type']}, real is the model {real['ref']}")
    schema = op.get("responses", {}).get("200", {}).get("schema")
    if schema is not None:
        if variant["response"] is None:
            problems.append(f"{op_id}: answers a body, the real operation none")
        else:
            problems += checker.schema(f"{op_id} response", schema, variant["response"])
    return problems, used | checker.used


def served_problems(
    specs: list[dict[str, Any]], contract: dict[str, Any], exemptions: dict[str, str]
) -> tuple[list[str], set[str]]:
    """(problems, exemptions used) of the served specs against the contract."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for entry in contract["operations"]:
        variants.setdefault(entry["operationId"], []).append(entry)
    problems: list[str] = []
    used: set[str] = set()
    for spec in specs:
        for path, item in spec["paths"].items():
            for method, op in item.items():
                op_id = op["operationId"]
                key = f"{op_id} operation"
                if op_id not in variants:
                    if key in exemptions:
                        used.add(key)
                    else:
                        problems.append(f"{op_id}: no snapshot has this operation")
                    continue
                attempts = [
                    _operation_problems(op_id, method, path, op, spec.get("definitions", {}), v, contract["models"], exemptions)
                    for v in variants[op_id]
                ]
                best = min(attempts, key=lambda a: len(a[0]))
                problems += best[0]
                used |= best[1]
    return problems, used


def parameter_known(contract: dict[str, Any], operation_id: str, parameter: str) -> bool:
    return any(
        parameter in v["parameters"] for v in contract["operations"] if v["operationId"] == operation_id
    )
