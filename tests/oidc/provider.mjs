// A real OpenID Provider for the tests of the console's OpenID Connect sign-in: the
// certified `oidc-provider` package (package.json, installed by `make test` with npm ci),
// standing in for the county's identity provider. Configured by the environment:
//
//   OIDC_ISSUER         its issuer URL, e.g. http://localhost:40123 (the port it listens on)
//   OIDC_CLIENT_ID      the one client (Tongxin), a confidential web client …
//   OIDC_CLIENT_SECRET  … authenticating with client_secret_basic
//   OIDC_REDIRECT_URI   Tongxin's callback, the only redirect URI the client may use
//   OIDC_ACCOUNTS       JSON: login → claims, e.g. {"wang": {"preferred_username": "x", "name": "王芳"}}
//
// The authorization code flow with PKCE (S256) required, ID tokens signed RS256 with a key
// made at start-up (published at jwks_uri). People sign in on the built-in development
// login page (devInteractions: any password); only the logins of OIDC_ACCOUNTS exist.
// Consent is not asked: the county's applications are its own (a grant is made at once).
// It prints one line, "ready <issuer>", once it answers.
import { generateKeyPairSync, randomBytes } from "node:crypto";

import Provider from "oidc-provider";

const need = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const issuer = need("OIDC_ISSUER");
const clientId = need("OIDC_CLIENT_ID");
const clientSecret = need("OIDC_CLIENT_SECRET");
const redirectUri = need("OIDC_REDIRECT_URI");
const accounts = JSON.parse(need("OIDC_ACCOUNTS"));

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "test-rs256", alg: "RS256", use: "sig" };

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["preferred_username", "name"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = Object.hasOwn(accounts, id) ? accounts[id] : undefined;
    if (claims === undefined) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    if (grantId) return oidc.provider.Grant.find(grantId);
    const grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    grant.addOIDCScope("openid profile");
    await grant.save();
    return grant;
  },
};

const url = new URL(issuer);
const provider = new Provider(issuer, configuration);
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(Number(url.port), url.hostname === "localhost" ? "127.0.0.1" : url.hostname, () => {
  console.log(`ready ${issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
