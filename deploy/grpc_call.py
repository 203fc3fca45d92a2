#!/usr/bin/env python3
"""Call our gRPC services by reflection, like a small grpcurl.

Needs only PyPI packages: pip install grpcio grpcio-reflection

    grpc_call.py 127.0.0.1:50051 list
    grpc_call.py 127.0.0.1:50051 describe auth.v1.AuthService
    grpc_call.py -d '{"token":"..."}' 127.0.0.1:50051 auth.v1.AuthService/IntrospectToken
    grpc_call.py -d '{"filter":{"successful":false}}' 127.0.0.1:50052 audit.v1.AuditService/Tail

Requests and answers are protobuf JSON (field names as in the .proto or in
camelCase); a server-streaming method prints one JSON document per message.
-H adds metadata, e.g. -H "authorization: Bearer $INTERNAL_TOKEN" when the
services require the internal token. Plaintext unless --cacert is given.
On a gRPC error it prints the code and message on stderr and exits 1.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Call a gRPC service found by server reflection."
    )
    parser.add_argument(
        "-d", "--data", default="{}", help="request as JSON ('@-' reads stdin)"
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        help="metadata 'name: value' (repeatable)",
    )
    parser.add_argument("--cacert", help="PEM CA bundle: speak TLS and trust it")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds (unary calls)"
    )
    parser.add_argument("address", help="host:port")
    parser.add_argument(
        "target", help="'list', 'describe SYMBOL', or package.Service/Method"
    )
    parser.add_argument("symbol", nargs="?", help="for describe")
    return parser.parse_args(argv)


def channel_for(args):
    if args.cacert:
        with open(args.cacert, "rb") as f:
            return grpc.secure_channel(
                args.address, grpc.ssl_channel_credentials(f.read())
            )
    return grpc.insecure_channel(args.address)


def metadata_of(headers):
    out = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep:
            sys.exit(f"grpc_call: -H {header!r} is not 'name: value'")
        out.append((name.strip().lower(), value.strip()))
    return out


def call(channel, pool, metadata, target, data, timeout):
    service_name, sep, method_name = target.partition("/")
    if not sep:
        sys.exit(f"grpc_call: {target!r} is not package.Service/Method")
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        sys.exit(f"grpc_call: the server does not offer {service_name}")
    method = service.methods_by_name.get(method_name)
    if method is None:
        sys.exit(f"grpc_call: {service_name} has no method {method_name}")
    if method.client_streaming:
        sys.exit(f"grpc_call: {target} streams requests, which this tool does not send")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    raw = sys.stdin.read() if data == "@-" else data
    request = json_format.Parse(raw, request_class())
    path = f"/{service_name}/{method_name}"
    serialize, deserialize = request_class.SerializeToString, response_class.FromString
    if method.server_streaming:
        stream = channel.unary_stream(path, serialize, deserialize)
        for message in stream(request, metadata=metadata):
            print(json_format.MessageToJson(message, indent=2), flush=True)
    else:
        unary = channel.unary_unary(path, serialize, deserialize)
        print(
            json_format.MessageToJson(
                unary(request, metadata=metadata, timeout=timeout), indent=2
            )
        )


TYPE_NAMES = {
    value: name[len("TYPE_") :].lower()
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_")
}


def describe(pool, symbol):
    """Prints a service's methods or a message's fields."""
    try:
        service = pool.FindServiceByName(symbol)
    except KeyError:
        message = pool.FindMessageTypeByName(symbol)
        print(f"message {message.full_name} {{")
        for field in message.fields:
            kind = (
                field.message_type.full_name
                if field.message_type
                else TYPE_NAMES[field.type]
            )
            print(f"  {field.name} = {field.number};  // {kind}")
        print("}")
        return
    print(f"service {service.full_name} {{")
    for method in service.methods:
        request = (
            "stream " if method.client_streaming else ""
        ) + method.input_type.full_name
        response = (
            "stream " if method.server_streaming else ""
        ) + method.output_type.full_name
        print(f"  rpc {method.name}({request}) returns ({response});")
    print("}")


def main(argv):
    args = parse_args(argv)
    metadata = metadata_of(args.header)
    with channel_for(args) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        try:
            if args.target == "list":
                for name in sorted(database.get_services()):
                    print(name)
            elif args.target == "describe":
                if not args.symbol:
                    sys.exit("grpc_call: describe needs a service or message name")
                describe(pool, args.symbol)
            else:
                call(channel, pool, metadata, args.target, args.data, args.timeout)
        except grpc.RpcError as e:
            print(
                f"ERROR:\n  Code: {e.code().name}\n  Message: {e.details()}",
                file=sys.stderr,
            )
            return 1
        except KeyError as e:
            print(f"grpc_call: not found by reflection: {e}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader (e.g. `head`) has all it wanted.
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
