"""The secret files ``docker-compose.secure.yml`` mounts, generated in one go.

    python -m tongxin.devstack.secrets var/secrets

writes random passwords, a throw-away CA with a certificate for the ``kafka`` service, the
broker's JAAS file, MongoDB's replica-set key file and the services' database URI — all
consistent with each other. Fine for a pilot; a real deployment takes its certificates
from its own CA and its passwords from its vault, under the same file names.
"""

from __future__ import annotations

import argparse
import base64
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tongxin.devstack.tls import make_tls_files

KAFKA_USER = "tongxin"
KAFKA_BROKER_USER = "tongxin-broker"
MONGO_APP_USER = "tongxin"

# file name → what it holds (the compose file's ``secrets:`` read these names)
FILES = {
    "kafka_ca.pem": "CA certificate the clients verify the broker with",
    "kafka.keystore.p12": "broker private key + certificate chain (PKCS#12 key store)",
    "kafka_keystore_password": "password of the key store and of its key",
    "kafka_server_jaas.conf": "broker's own SCRAM login (inter-broker)",
    "kafka_client_password": f"SCRAM password of the services' Kafka user {KAFKA_USER!r}",
    "kafka_broker_password": f"SCRAM password of {KAFKA_BROKER_USER!r}",
    "mongo_root_password": "MongoDB root password",
    "mongo_app_password": f"MongoDB password of the services' user {MONGO_APP_USER!r}",
    "mongo_keyfile": "replica-set member key (internal authentication)",
    "mongodb_uri": "the services' TONGXIN_MONGODB_URI, credentials included",
}


def write_compose_secrets(folder: Path) -> dict[str, Path]:
    """Write every file of :data:`FILES` into ``folder`` (overwriting); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    tls = make_tls_files(folder / "tls", dns_names=("kafka",), days=365)
    client_pw, broker_pw = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    root_pw, app_pw = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    store_pw = secrets.token_urlsafe(24)
    # the apache/kafka image wants a password-protected key store (JKS or PKCS#12)
    key = serialization.load_pem_private_key(tls.keyfile.read_bytes(), password=None)
    cert, *chain = x509.load_pem_x509_certificates(tls.certfile.read_bytes())
    keystore = pkcs12.serialize_key_and_certificates(
        b"kafka",
        key,  # type: ignore[arg-type]
        cert,
        chain,
        serialization.BestAvailableEncryption(store_pw.encode()),
    )
    contents = {
        "kafka_ca.pem": tls.cafile.read_text(),
        "kafka_keystore_password": store_pw,
        "kafka_server_jaas.conf": (
            "KafkaServer {\n"
            "  org.apache.kafka.common.security.scram.ScramLoginModule required\n"
            f'  username="{KAFKA_BROKER_USER}" password="{broker_pw}";\n'
            "};\n"
        ),
        "kafka_client_password": client_pw,
        "kafka_broker_password": broker_pw,
        "mongo_root_password": root_pw,
        "mongo_app_password": app_pw,
        "mongo_keyfile": base64.b64encode(secrets.token_bytes(756)).decode(),
        "mongodb_uri": (
            f"mongodb://{MONGO_APP_USER}:{app_pw}@mongo:27017/?replicaSet=rs0&authSource=admin"
        ),
    }
    paths: dict[str, Path] = {"kafka.keystore.p12": folder / "kafka.keystore.p12"}
    paths["kafka.keystore.p12"].write_bytes(keystore)
    paths["kafka.keystore.p12"].chmod(0o644)
    for name, text in contents.items():
        path = folder / name
        path.write_text(text if text.endswith("\n") else text + "\n")
        # bind-mounted into containers that run as other users; the folder stays 0700
        path.chmod(0o644)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m tongxin.devstack.secrets FOLDER``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("var/secrets"))
    args = parser.parse_args(argv)
    for name, path in write_compose_secrets(args.folder).items():
        print(f"{path}\t{FILES[name]}")


if __name__ == "__main__":
    main()
