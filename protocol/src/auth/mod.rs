//! NTLMSSP ([MS-NLMP]) inside SPNEGO ([RFC 4178]): the server side of authentication.
