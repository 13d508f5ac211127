//! Signing, key derivation, preauth integrity and the encryption transform ([MS-SMB2] 3.1.4, 2.2.41).
