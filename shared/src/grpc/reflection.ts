// gRPC server reflection (grpc.reflection.v1 and v1alpha ServerReflection) over the real file
// descriptors of proto/: the descriptor set that scripts/gen-proto.mjs compiles with protoc
// (proto/gen/descriptor-set.binpb), one FileDescriptorProto per .proto file with its own name,
// snake_case field names, map entry messages, proto3 optional and source comments. Each answer
// carries the requested file and its transitive imports, so a client (grpcurl, Python's
// DescriptorPool, Postman, evans) can build the types from reflection alone.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  FileDescriptorProtoSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { protoDir } from "../proto.js";

export const REFLECTION_SERVICE_NAMES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] as const;

/** The descriptor set reflection serves: RLMESH_DESCRIPTOR_SET, else proto/gen/descriptor-set.binpb. */
export function descriptorSetPath(): string {
  return process.env.RLMESH_DESCRIPTOR_SET || join(protoDir(), "gen", "descriptor-set.binpb");
}

interface IndexedFile {
  /** The FileDescriptorProto exactly as protoc wrote it. */
  bytes: Uint8Array;
  proto: FileDescriptorProto;
}

/** Files by name, symbols and extensions by fully-qualified name (no leading dot). */
export class DescriptorIndex {
  private readonly files = new Map<string, IndexedFile>();
  private readonly symbols = new Map<string, string>();
  /** extendee -> field number -> file. */
  private readonly extensions = new Map<string, Map<number, string>>();

  /** Reads a serialized FileDescriptorSet (protoc --descriptor_set_out). */
  static fromDescriptorSet(bytes: Uint8Array): DescriptorIndex {
    const index = new DescriptorIndex();
    const reader = new BinaryReader(bytes);
    while (reader.pos < reader.len) {
      const [fieldNo, wireType] = reader.tag();
      if (fieldNo === 1 && wireType === WireType.LengthDelimited) index.add(reader.bytes().slice());
      else reader.skip(wireType, fieldNo);
    }
    for (const f of index.files.values()) {
      for (const dep of f.proto.dependency) {
        if (!index.files.has(dep))
          throw new Error(`descriptor set: ${f.proto.name} imports ${dep}, which the set lacks (build it with protoc --include_imports)`);
      }
    }
    return index;
  }

  static fromFile(path = descriptorSetPath()): DescriptorIndex {
    if (!existsSync(path)) {
      throw new Error(
        `reflection descriptor set ${path} is missing: run node scripts/gen-proto.mjs (npm run build) with protoc installed (apt-get install -y protobuf-compiler)`,
      );
    }
    return DescriptorIndex.fromDescriptorSet(readFileSync(path));
  }

  fileNames(): string[] {
    return [...this.files.keys()];
  }

  /** The file's serialized descriptor followed by those of its transitive imports (each once). */
  fileWithImports(name: string): Uint8Array[] | undefined {
    if (!this.files.has(name)) return undefined;
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (n: string) => {
      if (seen.has(n)) return;
      seen.add(n);
      const f = this.files.get(n)!;
      out.push(f.bytes);
      for (const dep of f.proto.dependency) visit(dep);
    };
    visit(name);
    return out;
  }

  /** The file that defines a package-qualified symbol (message, field, enum, value, service, method, extension). */
  fileOfSymbol(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ""));
  }

  fileOfExtension(extendee: string, fieldNumber: number): string | undefined {
    return this.extensions.get(extendee.replace(/^\./, ""))?.get(fieldNumber);
  }

  /** Extension numbers of a message type, or undefined when the type is unknown. */
  extensionNumbers(typeName: string): number[] | undefined {
    const t = typeName.replace(/^\./, "");
    if (!this.symbols.has(t)) return undefined;
    return [...(this.extensions.get(t)?.keys() ?? [])].sort((a, b) => a - b);
  }

  private add(bytes: Uint8Array): void {
    const proto = fromBinary(FileDescriptorProtoSchema, bytes);
    if (this.files.has(proto.name)) return;
    this.files.set(proto.name, { bytes, proto });
    const file = proto.name;
    const prefix = proto.package ? `${proto.package}.` : "";
    const sym = (name: string) => {
      if (!this.symbols.has(name)) this.symbols.set(name, file);
    };
    const ext = (f: FieldDescriptorProto, scope: string) => {
      sym(scope + f.name);
      const extendee = f.extendee.replace(/^\./, "");
      let byNumber = this.extensions.get(extendee);
      if (!byNumber) this.extensions.set(extendee, (byNumber = new Map()));
      if (!byNumber.has(f.number)) byNumber.set(f.number, file);
    };
    const enumType = (e: EnumDescriptorProto, scope: string) => {
      sym(scope + e.name);
      // Enum values are siblings of their enum in protobuf's scoping; Enum.VALUE is accepted too.
      for (const v of e.value) {
        sym(scope + v.name);
        sym(`${scope}${e.name}.${v.name}`);
      }
    };
    const message = (m: DescriptorProto, scope: string) => {
      const name = scope + m.name;
      sym(name);
      for (const f of m.field) sym(`${name}.${f.name}`);
      for (const o of m.oneofDecl) sym(`${name}.${o.name}`);
      for (const e of m.enumType) enumType(e, `${name}.`);
      for (const n of m.nestedType) message(n, `${name}.`);
      for (const x of m.extension) ext(x, `${name}.`);
    };
    for (const m of proto.messageType) message(m, prefix);
    for (const e of proto.enumType) enumType(e, prefix);
    for (const x of proto.extension) ext(x, prefix);
    for (const s of proto.service) {
      sym(prefix + s.name);
      for (const m of s.method) sym(`${prefix}${s.name}.${m.name}`);
    }
  }
}

// --- the reflection protocol (grpc/reflection/v1/reflection.proto; v1alpha has the same wire shape) ---

type ReflectionRequest =
  | { host: string; kind: "file_by_filename" | "file_containing_symbol" | "all_extension_numbers_of_type" | "list_services"; value: string }
  | { host: string; kind: "file_containing_extension"; containingType: string; extensionNumber: number }
  | { host: string; kind: "none" };

/** Decodes a ServerReflectionRequest. */
export function decodeReflectionRequest(bytes: Uint8Array): ReflectionRequest {
  const r = new BinaryReader(bytes);
  let host = "";
  let req: ReflectionRequest = { host, kind: "none" };
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) host = r.string();
    else if (no === 3 && wt === WireType.LengthDelimited) req = { host, kind: "file_by_filename", value: r.string() };
    else if (no === 4 && wt === WireType.LengthDelimited) req = { host, kind: "file_containing_symbol", value: r.string() };
    else if (no === 6 && wt === WireType.LengthDelimited) req = { host, kind: "all_extension_numbers_of_type", value: r.string() };
    else if (no === 7 && wt === WireType.LengthDelimited) req = { host, kind: "list_services", value: r.string() };
    else if (no === 5 && wt === WireType.LengthDelimited) {
      const inner = new BinaryReader(r.bytes());
      let containingType = "";
      let extensionNumber = 0;
      while (inner.pos < inner.len) {
        const [n, w] = inner.tag();
        if (n === 1 && w === WireType.LengthDelimited) containingType = inner.string();
        else if (n === 2 && w === WireType.Varint) extensionNumber = inner.int32();
        else inner.skip(w, n);
      }
      req = { host, kind: "file_containing_extension", containingType, extensionNumber };
    } else r.skip(wt, no);
  }
  req.host = host;
  return req;
}

/** Answers one ServerReflectionRequest with a serialized ServerReflectionResponse. */
export function answerReflection(index: DescriptorIndex, services: readonly string[], raw: Uint8Array): Uint8Array {
  const w = new BinaryWriter();
  let req: ReflectionRequest;
  try {
    req = decodeReflectionRequest(raw);
  } catch (err) {
    w.tag(2, WireType.LengthDelimited).bytes(raw);
    return error(w, grpc.status.INVALID_ARGUMENT, `malformed ServerReflectionRequest: ${(err as Error).message}`);
  }
  if (req.host) w.tag(1, WireType.LengthDelimited).string(req.host);
  w.tag(2, WireType.LengthDelimited).bytes(raw);
  const files = (list: Uint8Array[]) => {
    w.tag(4, WireType.LengthDelimited).fork();
    for (const f of list) w.tag(1, WireType.LengthDelimited).bytes(f);
    w.join();
    return w.finish();
  };
  switch (req.kind) {
    case "list_services": {
      w.tag(6, WireType.LengthDelimited).fork();
      for (const s of services) w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(s).join();
      w.join();
      return w.finish();
    }
    case "file_by_filename": {
      const list = index.fileWithImports(req.value);
      return list ? files(list) : error(w, grpc.status.NOT_FOUND, `file not found: ${req.value}`);
    }
    case "file_containing_symbol": {
      const file = index.fileOfSymbol(req.value);
      return file ? files(index.fileWithImports(file)!) : error(w, grpc.status.NOT_FOUND, `symbol not found: ${req.value}`);
    }
    case "file_containing_extension": {
      const file = index.fileOfExtension(req.containingType, req.extensionNumber);
      return file
        ? files(index.fileWithImports(file)!)
        : error(w, grpc.status.NOT_FOUND, `extension not found: ${req.containingType} field ${req.extensionNumber}`);
    }
    case "all_extension_numbers_of_type": {
      const numbers = index.extensionNumbers(req.value);
      if (!numbers) return error(w, grpc.status.NOT_FOUND, `type not found: ${req.value}`);
      w.tag(5, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(req.value.replace(/^\./, ""));
      for (const n of numbers) w.tag(2, WireType.Varint).int32(n);
      w.join();
      return w.finish();
    }
    default:
      return error(w, grpc.status.INVALID_ARGUMENT, "ServerReflectionRequest.message_request is not set");
  }
}

function error(w: BinaryWriter, code: grpc.status, message: string): Uint8Array {
  w.tag(7, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(code).tag(2, WireType.LengthDelimited).string(message).join();
  return w.finish();
}

const identity = (b: Buffer) => b;

function definition(version: "v1" | "v1alpha"): grpc.ServiceDefinition {
  return {
    ServerReflectionInfo: {
      path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
      originalName: "serverReflectionInfo",
    },
  };
}

/**
 * Adds grpc.reflection.v1 and v1alpha ServerReflection to a server. `services` are the names
 * list_services reports (what this server serves); every file of the index can be fetched.
 */
export function addReflection(server: grpc.Server, index: DescriptorIndex, services: readonly string[]): void {
  const listed = [...new Set([...services, ...REFLECTION_SERVICE_NAMES])];
  for (const name of listed) {
    if (!index.fileOfSymbol(name))
      throw new Error(`reflection: service ${name} is not in the descriptor set (${index.fileNames().join(", ")})`);
  }
  const handler: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    call.on("data", (raw: Buffer) => {
      call.write(Buffer.from(answerReflection(index, listed, raw)));
    });
    call.on("end", () => call.end());
    call.on("error", () => undefined);
  };
  for (const v of ["v1", "v1alpha"] as const) server.addService(definition(v), { ServerReflectionInfo: handler });
}

let cachedIndex: DescriptorIndex | undefined;
/** The descriptor set at descriptorSetPath(), read once per process. */
export function defaultDescriptorIndex(): DescriptorIndex {
  cachedIndex ??= DescriptorIndex.fromFile();
  return cachedIndex;
}
