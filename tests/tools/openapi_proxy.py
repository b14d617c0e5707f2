#!/usr/bin/env python3
"""A reverse proxy that checks an HTTP API against its OpenAPI 3.1 document (for tests).

Usage:
  openapi_proxy.py --spec SPEC --check-spec
  openapi_proxy.py --spec SPEC --listen HOST:PORT --upstream http://HOST:PORT --report FILE

--check-spec checks the document itself: YAML without duplicate keys, every $ref resolves,
every schema is a valid JSON Schema 2020-12 schema and its `examples` validate, every path
parameter is declared (and every declared one is in the path), operation ids are unique,
security schemes exist. It prints the problems and exits 1, or prints a summary and exits 0.

As a proxy it forwards every request as it is (method, target, headers, body; only `Expect`
is dropped, because the proxy has already read the body) to the upstream, and the answer
back as it is (a chunked answer is sent with a Content-Length instead). Before answering it
checks the exchange and appends each violation to the report as one JSON line
{"method", "path", "status", "problem"}:
  - the route (path under the first server URL, and method) must be in the document;
  - the answer's status must be documented for the operation, its body must be JSON and
    validate against that status's schema (4xx answers included: they must be Errors);
  - only when the answer is 2xx (a 4xx to a bad request is the server doing its job): the
    request must carry a bearer token where the operation needs one, its query and path
    parameters must be declared and valid, and its JSON body must validate.
PORT 0 picks a free port; the proxy prints "listening on HOST:PORT" once it accepts
connections. It refuses to start when --check-spec would fail. Runs until killed.

Needs PyYAML and jsonschema (Debian: python3-yaml, python3-jsonschema); works with the
jsonschema of Debian 12 (4.10, RefResolver) and later ones (referencing): refs are local
JSON pointers, resolved against a root that carries the document's components.
"""
import argparse
import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse

import jsonschema
import yaml

DIALECT = "https://json-schema.org/draft/2020-12/schema"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_MESSAGE = 300


class SpecError(Exception):
    pass


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A SafeLoader that refuses a mapping with the same key twice (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SpecError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_document(path):
    with open(path, encoding="utf-8") as f:
        try:
            doc = yaml.load(f, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            raise SpecError(f"not YAML: {e}") from e
    if not isinstance(doc, dict):
        raise SpecError("the document is not a mapping")
    return doc


def resolve_pointer(doc, ref):
    """The value a local reference ("#/a/b~1c") names; KeyError when there is none."""
    if not ref.startswith("#"):
        raise KeyError(f"{ref}: only local references are supported")
    node = doc
    for raw in ref[1:].split("/")[1:]:
        part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(f"{ref}: nothing at '{part}'")
    return node


def json_path(parts):
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def short(text):
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


class Spec:
    """The parsed document: route matching and cached schema validators. Thread-safe."""

    def __init__(self, doc):
        self.doc = doc
        servers = doc.get("servers") or [{"url": "/"}]
        self.base = urllib.parse.urlsplit(servers[0].get("url", "/")).path.rstrip("/")
        self.routes = []
        for template, item in (doc.get("paths") or {}).items():
            pattern, literal_first = "", []
            for segment in template.strip("/").split("/"):
                names = re.findall(r"\{([^}]+)\}", segment)
                literal_first.append(1 if names else 0)
                pattern += "/" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(segment))
            names = re.findall(r"\{([^}]+)\}", template)
            self.routes.append((literal_first, re.compile(pattern), names, template, item))
        # Concrete segments win over templated ones (/nodes/register before /nodes/{id}).
        self.routes.sort(key=lambda r: (r[0], r[3]))
        self._validators = {}
        self._lock = threading.Lock()

    def deref(self, obj):
        """Follows $ref of a non-schema object (parameter, response, request body)."""
        seen = 0
        while isinstance(obj, dict) and isinstance(obj.get("$ref"), str):
            obj = resolve_pointer(self.doc, obj["$ref"])
            seen += 1
            if seen > 32:
                raise KeyError("reference cycle")
        return obj

    def match(self, method, path):
        """(template, operation, path item, {param: value}) or None."""
        if self.base and not (path == self.base or path.startswith(self.base + "/")):
            return None
        rest = path[len(self.base):] or "/"
        for _, regex, names, template, item in self.routes:
            m = regex.fullmatch(rest)
            if m and method.lower() in item:
                values = {n: urllib.parse.unquote(v) for n, v in zip(names, m.groups())}
                return template, item[method.lower()], item, values
        return None

    def parameters(self, item, op):
        """Effective parameters of an operation: {(name, in): parameter}."""
        merged = {}
        for p in (item.get("parameters") or []) + (op.get("parameters") or []):
            p = self.deref(p)
            merged[(p.get("name"), p.get("in"))] = p
        return merged

    def validator(self, schema):
        # Schemas live as long as the document, so their id() names them uniquely.
        key = id(schema)
        with self._lock:
            v = self._validators.get(key)
            if v is None:
                root = {"$schema": DIALECT, "components": self.doc.get("components", {}),
                        "allOf": [schema]}
                v = self._validators[key] = jsonschema.Draft202012Validator(root)
            return v

    def errors(self, schema, instance):
        """Every way the instance fails the schema, as "$.path: message", sorted."""
        out = []
        for e in self.validator(schema).iter_errors(instance):
            message = e.message
            if e.validator in ("anyOf", "oneOf") and e.context:
                # The message would start with the whole instance; the reasons say more.
                reasons = sorted({c.message[:120] for c in e.context})
                message = f"matches none of the {e.validator} choices: " + "; ".join(reasons)
            out.append(f"{json_path(e.absolute_path)}: {short(message)}")
        return sorted(set(out))


# --- checking the document ----------------------------------------------------------------

def _walk_refs(node, where, out):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.append((where, ref))
        for k, v in node.items():
            _walk_refs(v, f"{where}/{str(k).replace('~', '~0').replace('/', '~1')}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk_refs(v, f"{where}/{i}", out)


def _schemas(spec):
    """(location, schema) of every schema object the document uses directly."""
    doc, out = spec.doc, []
    comps = doc.get("components") or {}
    for name, s in (comps.get("schemas") or {}).items():
        out.append((f"components/schemas/{name}", s))

    def media(where, content):
        for mt, m in (content or {}).items():
            if isinstance(m, dict) and "schema" in m:
                out.append((f"{where}/content/{mt}/schema", m["schema"]))

    for name, p in (comps.get("parameters") or {}).items():
        if isinstance(p, dict) and "schema" in p:
            out.append((f"components/parameters/{name}/schema", p["schema"]))
    for name, r in (comps.get("responses") or {}).items():
        if isinstance(r, dict):
            media(f"components/responses/{name}", r.get("content"))
    for name, r in (comps.get("requestBodies") or {}).items():
        if isinstance(r, dict):
            media(f"components/requestBodies/{name}", r.get("content"))
    for template, item in (doc.get("paths") or {}).items():
        for i, p in enumerate(item.get("parameters") or []):
            if isinstance(p, dict) and "schema" in p:
                out.append((f"paths{template}/parameters/{i}/schema", p["schema"]))
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            where = f"paths{template}/{method}"
            for i, p in enumerate(op.get("parameters") or []):
                if isinstance(p, dict) and "schema" in p:
                    out.append((f"{where}/parameters/{i}/schema", p["schema"]))
            rb = op.get("requestBody")
            if isinstance(rb, dict):
                media(f"{where}/requestBody", rb.get("content"))
            for status, r in (op.get("responses") or {}).items():
                if isinstance(r, dict):
                    media(f"{where}/responses/{status}", r.get("content"))
    return out


def check_document(spec):
    doc, problems = spec.doc, []
    if not str(doc.get("openapi", "")).startswith("3.1"):
        problems.append(f"openapi: {doc.get('openapi')!r} is not 3.1.x")

    refs = []
    _walk_refs(doc, "#", refs)
    for where, ref in refs:
        try:
            resolve_pointer(doc, ref)
        except KeyError as e:
            problems.append(f"{where}: $ref does not resolve: {e.args[0]}")

    for where, schema in _schemas(spec):
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.exceptions.SchemaError as e:
            problems.append(f"{where}: not a valid 2020-12 schema: "
                            f"{json_path(e.absolute_path)}: {short(e.message)}")
            continue
        examples = schema.get("examples") if isinstance(schema, dict) else None
        for i, example in enumerate(examples if isinstance(examples, list) else []):
            try:
                errors = spec.errors(schema, example)
            except Exception:  # it reaches a broken $ref or schema, reported on its own
                continue
            for err in errors:
                problems.append(f"{where}: example {i} does not validate: {err}")

    schemes = ((doc.get("components") or {}).get("securitySchemes") or {})

    def check_security(where, requirements):
        for req in requirements or []:
            for name in req:
                if name not in schemes:
                    problems.append(f"{where}: security scheme '{name}' is not defined")

    check_security("security", doc.get("security"))
    op_ids = {}
    for template, item in (doc.get("paths") or {}).items():
        if not template.startswith("/"):
            problems.append(f"paths: '{template}' does not start with '/'")
        in_path = re.findall(r"\{([^}]+)\}", template)
        if len(set(in_path)) != len(in_path):
            problems.append(f"paths{template}: a path parameter appears twice")
        operations = [m for m in METHODS if m in item]
        if not operations:
            problems.append(f"paths{template}: no operations")
        for method in operations:
            op, where = item[method], f"paths{template}/{method}"
            try:
                params = spec.parameters(item, op)
            except KeyError:
                continue  # already reported as a broken $ref
            declared = {name for (name, where_in) in params if where_in == "path"}
            for name in in_path:
                if name not in declared:
                    problems.append(f"{where}: path parameter '{name}' is not declared")
                elif params[(name, "path")].get("required") is not True:
                    problems.append(f"{where}: path parameter '{name}' is not required: true")
            for name in sorted(declared - set(in_path)):
                problems.append(f"{where}: declared path parameter '{name}' is not in the path")
            op_id = op.get("operationId")
            if op_id in op_ids:
                problems.append(f"{where}: operationId '{op_id}' also used by {op_ids[op_id]}")
            elif op_id:
                op_ids[op_id] = where
            responses = op.get("responses") or {}
            if not responses:
                problems.append(f"{where}: no responses")
            for status in responses:
                if not re.fullmatch(r"[1-5](\d\d|XX)|default", str(status)):
                    problems.append(f"{where}: response key '{status}' is not a status")
            check_security(where, op.get("security"))
    return problems


# --- checking an exchange -----------------------------------------------------------------

def _coerce(spec, schema, value):
    """A query or path parameter's text as the JSON value its schema's type asks for."""
    try:
        s = spec.deref(schema)
    except KeyError:
        return value
    t = s.get("type") if isinstance(s, dict) else None
    if t == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if t == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if t == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _is_json(content_type):
    return content_type.split(";")[0].strip().lower() == "application/json"


def check_exchange(spec, method, target, headers, body, status, resp_headers, data):
    """The problems of one request and its answer, as strings."""
    split = urllib.parse.urlsplit(target)
    found = spec.match(method, split.path)
    if found is None:
        return ["undocumented route"]
    _, op, item, path_values = found
    problems = []

    if 200 <= status < 300:
        security = op.get("security", spec.doc.get("security"))
        needs_token = bool(security) and not any(len(req) == 0 for req in security)
        if needs_token and not headers.get("Authorization", "").startswith("Bearer "):
            problems.append(f"answered {status} to a request without a bearer token")

        params = spec.parameters(item, op)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        for name in sorted(query):
            if (name, "query") not in params:
                problems.append(f"undocumented query parameter '{name}'")
        for (name, where_in), p in sorted(params.items(), key=lambda kv: kv[0]):
            if where_in == "query":
                if name not in query:
                    if p.get("required"):
                        problems.append(f"missing required query parameter '{name}'")
                    continue
                value = query[name][-1]
            elif where_in == "path":
                value = path_values.get(name, "")
            else:
                continue
            if "schema" in p:
                for err in spec.errors(p["schema"], _coerce(spec, p["schema"], value)):
                    problems.append(f"{where_in} parameter '{name}': {err}")

        rb = spec.deref(op["requestBody"]) if "requestBody" in op else None
        if not body.strip():
            if rb and rb.get("required"):
                problems.append("request body is required but empty")
        elif rb is None:
            problems.append("request body sent to an operation that takes none")
        else:
            media = (rb.get("content") or {}).get("application/json")
            if not _is_json(headers.get("Content-Type", "")):
                problems.append("request Content-Type is not application/json")
            try:
                instance = json.loads(body)
            except ValueError:
                problems.append("request body is not JSON")
            else:
                if media and "schema" in media:
                    for err in spec.errors(media["schema"], instance):
                        problems.append(f"request body: {err}")

    responses = op.get("responses") or {}
    documented = (responses.get(str(status)) or responses.get(f"{status // 100}XX")
                  or responses.get("default"))
    if documented is None:
        problems.append(f"undocumented status {status}")
        return problems
    documented = spec.deref(documented)
    content = documented.get("content") or {}
    if method.upper() == "HEAD" or status in (204, 304):
        return problems
    if not content:
        if data:
            problems.append("response body where the document has none")
        return problems
    content_type = resp_headers.get("Content-Type", "")
    media = content.get("application/json")
    if media is None or not _is_json(content_type):
        problems.append(f"response Content-Type '{content_type}' is not documented")
        return problems
    try:
        instance = json.loads(data)
    except ValueError:
        problems.append("response body is not JSON")
        return problems
    if "schema" in media:
        for err in spec.errors(media["schema"], instance):
            problems.append(f"response body: {err}")
    return problems


# --- the proxy ----------------------------------------------------------------------------

class Report:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def add(self, method, path, status, problem):
        line = json.dumps({"method": method, "path": path, "status": status, "problem": problem})
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        print(f"openapi_proxy: {method} {path} {status}: {problem}", file=sys.stderr, flush=True)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """One instance per client connection; it keeps its own upstream connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    upstream = None  # http.client.HTTPConnection, per client connection

    def log_message(self, format, *args):
        pass

    def _forward(self, body):
        host, port = self.server.upstream_address
        for attempt in (0, 1):
            fresh = self.upstream is None
            if fresh:
                self.upstream = http.client.HTTPConnection(host, port, timeout=300)
            try:
                self.upstream.putrequest(self.command, self.path, skip_host=True,
                                         skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() != "expect":
                        self.upstream.putheader(k, v)
                try:
                    self.upstream.endheaders(body or None)
                except OSError:
                    if self.upstream.sock is None:
                        raise  # never connected
                    # It may have answered early (413) and stopped reading: read on.
                resp = self.upstream.getresponse()
                return resp, resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.upstream.close()
                self.upstream = None
                # A kept-alive connection that the upstream closed while idle: once more.
                if fresh or attempt:
                    raise

    def _relay(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(501, "chunked request bodies are not supported by this proxy")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        try:
            resp, data = self._forward(body)
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            self.server.report.add(self.command, path, 502, f"upstream unreachable: {e}")
            self.send_error(502, "upstream unreachable")
            return
        resp_headers = resp.getheaders()
        try:
            problems = check_exchange(self.server.spec, self.command, self.path, self.headers,
                                      body, resp.status, resp.msg, data)
        except Exception as e:  # a proxy bug must not look like a server bug
            problems = [f"proxy could not check this exchange: {e!r}"]
        for problem in problems:
            self.server.report.add(self.command, path, resp.status, problem)

        self.send_response_only(resp.status, resp.reason)
        has_length = False
        for k, v in resp_headers:
            if k.lower() == "transfer-encoding":
                continue
            has_length = has_length or k.lower() == "content-length"
            self.send_header(k, v)
        if not has_length and self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if resp.will_close and self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _relay

    def finish(self):
        if self.upstream is not None:
            self.upstream.close()
        super().finish()


def serve(spec, listen, upstream, report):
    host, _, port = listen.rpartition(":")
    target = urllib.parse.urlsplit(upstream)
    if target.scheme != "http" or not target.hostname:
        raise SystemExit(f"--upstream: expected http://HOST:PORT, got {upstream!r}")
    server = http.server.ThreadingHTTPServer((host, int(port)), ProxyHandler)
    server.daemon_threads = True
    server.spec = spec
    server.report = Report(report)
    server.upstream_address = (target.hostname, target.port or 80)
    print(f"listening on {host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True, help="the OpenAPI 3.1 document (YAML or JSON)")
    ap.add_argument("--check-spec", action="store_true", help="check the document and exit")
    ap.add_argument("--listen", help="HOST:PORT to accept connections on (PORT 0: any)")
    ap.add_argument("--upstream", help="http://HOST:PORT of the server under test")
    ap.add_argument("--report", help="file that violations are appended to, one JSON a line")
    args = ap.parse_args()
    try:
        spec = Spec(load_document(args.spec))
        problems = check_document(spec)
    except (OSError, SpecError) as e:
        print(f"{args.spec}: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"{args.spec}: {p}", file=sys.stderr)
    if args.check_spec:
        if not problems:
            ops = sum(1 for item in spec.doc.get("paths", {}).values() for m in METHODS if m in item)
            print(f"{args.spec}: ok: {len(spec.routes)} paths, {ops} operations, "
                  f"{len(_schemas(spec))} schemas")
        return 1 if problems else 0
    if problems:
        print("refusing to proxy with a broken document", file=sys.stderr)
        return 1
    if not (args.listen and args.upstream and args.report):
        ap.error("--listen, --upstream and --report are needed unless --check-spec is given")
    serve(spec, args.listen, args.upstream, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
