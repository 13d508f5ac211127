//! The DCE/RPC subset Duet serves on named pipes: bind, request/response, and srvsvc ([MS-RPCE], [MS-SRVS]).
