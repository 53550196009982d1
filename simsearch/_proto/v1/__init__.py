"""Generated code of protos/simsearch/v1 (see scripts/gen_protos.py); do not edit."""
