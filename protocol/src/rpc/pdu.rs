//! Connection-oriented DCE/RPC PDUs ([C706] 12.6, [MS-RPCE] 2.2.2).
