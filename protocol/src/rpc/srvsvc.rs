//! The srvsvc interface ([MS-SRVS] 3.1.4): share and server enumeration.
