//! The wkssvc interface ([MS-WKST] 3.2.4.1): NetrWkstaGetInfo.
