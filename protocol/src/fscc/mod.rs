//! File system information structures ([MS-FSCC] 2.4, 2.5) and security descriptors ([MS-DTYP]).
