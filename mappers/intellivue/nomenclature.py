"""Constants of the IntelliVue LAN Data Export protocol (Philips Data Export Interface
Programming Guide, X2/MP/MX release L.0; the same values appear in public implementations).

Everything on the wire is big-endian. A data-export message starts with the session/presentation
header ``SPpdu`` (session id 0xE100, presentation context id), then ``ROapdus`` (remote
operation type and length), then the operation (invoke, result, linked result, error).
Association control uses the session-layer SPDUs below instead.
"""

from __future__ import annotations

# Session SPDU types (first byte of an association-control message)
CN_SPDU = 0x0D  # association request (connect)
AC_SPDU = 0x0E  # association response (accept)
RF_SPDU = 0x0C  # refuse
FN_SPDU = 0x09  # release request (finish)
DN_SPDU = 0x0A  # release response (disconnect)
AB_SPDU = 0x19  # abort
DATA_EXPORT_SESSION = 0xE100

# Remote operation (ROapdus.ro_type)
ROIV_APDU = 1  # invoke
RORS_APDU = 2  # result
ROER_APDU = 3  # error
ROLRS_APDU = 5  # linked result (one part of a multi-part poll reply)
RORLS_FIRST, RORLS_NOT_FIRST_NOT_LAST, RORLS_LAST = 1, 2, 3

# Commands (ROIVapdu.command_type)
CMD_EVENT_REPORT = 0
CMD_CONFIRMED_EVENT_REPORT = 1
CMD_GET = 3
CMD_CONFIRMED_ACTION = 7

# Object classes, partitions, events and actions
NOM_PART_OBJ = 1
NOM_PART_SCADA = 2
NOM_MOC_VMO_METRIC_NU = 6
NOM_MOC_VMO_METRIC_SA_RT = 9
NOM_MOC_VMS_MDS = 33
NOM_NOTI_MDS_CREAT = 3334
NOM_NOTI_CONN_INDIC = 3351
NOM_ACT_POLL_MDIB_DATA = 3094
NOM_ACT_POLL_MDIB_DATA_EXT = 61755

# Attribute ids
NOM_ATTR_ID_BED_LABEL = 0x091E
NOM_ATTR_ID_HANDLE = 0x0921
NOM_ATTR_ID_LABEL = 0x0924
NOM_ATTR_ID_MODEL = 0x0928
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_SA_CMPD_VAL_OBS = 0x0967
NOM_ATTR_SA_SPECN = 0x096D
NOM_ATTR_SA_VAL_OBS = 0x096E
NOM_ATTR_SCALE_SPECN_I16 = 0x096F
NOM_ATTR_SYS_ID = 0x0984
NOM_ATTR_SYS_TYPE = 0x0986
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_PD_SAMP = 0x098D
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_UNIT_CODE = 0x0996
NOM_ATTR_NET_ADDR_INFO = 0xF100
NOM_ATTR_PCOL_SUPPORT = 0xF101
NOM_ATTR_TIME_PD_POLL = 0xF13E
NOM_POLL_PROFILE_SUPPORT = 0x0001
NOM_ATTR_POLL_PROFILE_EXT = 0xF001

# MeasurementState bits (NuObsValue.state); any of INVALID_MASK means "do not use the value"
MS_INVALID = 0x8000
MS_QUESTIONABLE = 0x4000
MS_UNAVAILABLE = 0x2000
MS_CALIBRATION_ONGOING = 0x1000
MS_TEST_DATA = 0x0800
MS_DEMO_DATA = 0x0400
MS_VALIDATED = 0x0080
MS_EARLY_INDICATION = 0x0040
MS_MSMT_ONGOING = 0x0020
MS_IN_ALARM = 0x0002
INVALID_MASK = 0xF800

STATE_NAMES = {
    MS_INVALID: "invalid", MS_QUESTIONABLE: "questionable", MS_UNAVAILABLE: "unavailable",
    MS_CALIBRATION_ONGOING: "calibration-ongoing", MS_TEST_DATA: "test-data",
    MS_DEMO_DATA: "demo-data", MS_VALIDATED: "validated", MS_EARLY_INDICATION: "early-indication",
    MS_MSMT_ONGOING: "measurement-ongoing", MS_IN_ALARM: "in-alarm",
}

# FLOAT-Type special values (exponent 0)
FLOAT_NAN = 0x007FFFFF
FLOAT_NRES = 0x00800000
FLOAT_POS_INF = 0x007FFFFE
FLOAT_NEG_INF = 0x00800002
FLOAT_RESERVED = 0x00800001
FLOAT_SPECIAL = {FLOAT_NAN: "NaN", FLOAT_NRES: "NRes", FLOAT_POS_INF: "+INF",
                 FLOAT_NEG_INF: "-INF", FLOAT_RESERVED: "reserved"}

# Fixed parts of the association request around the user data (session header aside):
# session data, then the presentation/ACSE header (BER, indefinite lengths) ending in the
# user-information EXTERNAL whose octet-aligned value is MDSEUserInfoStd, then the
# presentation trailer. Values from the Guide's association request example.
ASSOC_SESSION_DATA = bytes.fromhex("05081301001601028000140200 02".replace(" ", ""))
ASSOC_PRESENTATION_HEADER = bytes.fromhex(
    "c1dc3180a080800101 0000a280a003000001a4803080020101060452010001"
    "3080060251010000000030800201020 60c2a8648ce140201000000010130"
    "80060c2a8648ce14020100000002010000000000006180308002010 1a080"
    "6080a180060c2a8648ce1402010000000301000 0be80288006 0c2a8648ce"
    "1402010000000101020102".replace(" ", ""))
ASSOC_PRESENTATION_TRAILER = bytes(16)
USER_INFO_EXTERNAL = bytes.fromhex("be802880")  # [APPLICATION 30] EXTERNAL, indefinite length
