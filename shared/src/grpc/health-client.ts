import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

interface HealthResponse {
  status: string;
}
type HealthClient = grpc.Client & {
  check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: HealthResponse) => void): void;
};

let HealthCtor: (new (addr: string, creds: grpc.ChannelCredentials) => HealthClient) | undefined;

/** Calls grpc.health.v1.Health/Check; resolves to SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN. */
export async function checkHealth(address: string, service = "", timeoutMs = 3000): Promise<string> {
  if (!HealthCtor) {
    const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => HealthClient } } };
    };
    HealthCtor = pkg.grpc.health.v1.Health;
  }
  const client = new HealthCtor(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) => {
      client.check({ service }, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) =>
        err ? reject(err) : resolve(res?.status ?? "UNKNOWN"),
      );
    });
  } finally {
    client.close();
  }
}
