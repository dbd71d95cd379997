/*
 * err.c — texts of the engine's error codes. Kept in one table so that the names in
 * docs/protocol.md, the push results and the logs all agree.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct err_text {
    int code;
    const char *name;
    const char *text;
};

static const struct err_text err_table[] = {
    {FS_OK, "OK", "success"},
    {FS_ENOMEM, "ENOMEM", "out of memory"},
    {FS_EIO, "EIO", "the store failed (disk full, read-only, locked or corrupt)"},
    {FS_EINVAL, "EINVAL", "invalid argument"},
    {FS_ENOTFOUND, "ENOTFOUND", "not found"},
    {FS_ESCHEMA, "ESCHEMA", "the schema is missing or invalid"},
    {FS_ECOMPRESS, "ECOMPRESS", "compression failed or dictionary unknown"},
    {FS_EDEC_TRUNCATED, "EDEC_TRUNCATED", "input ends in the middle of a value"},
    {FS_EDEC_TYPE, "EDEC_TYPE", "a value has the wrong MessagePack type"},
    {FS_EDEC_DEPTH, "EDEC_DEPTH", "nesting too deep"},
    {FS_EDEC_COUNT, "EDEC_COUNT", "a container claims more items than allowed or than bytes remain"},
    {FS_EDEC_TOOBIG, "EDEC_TOOBIG", "a message, string or batch exceeds its limit"},
    {FS_EDEC_UTF8, "EDEC_UTF8", "text is not valid UTF-8 or contains NUL"},
    {FS_EDEC_TRAILING, "EDEC_TRAILING", "bytes left over after the message"},
    {FS_EDEC_MISSING, "EDEC_MISSING", "a required message field is absent"},
    {FS_EDEC_FRAME, "EDEC_FRAME", "bad frame header"},
    {FS_EUNKNOWN_TYPE, "EUNKNOWN_TYPE", "record type unknown to the receiver's schema"},
    {FS_EUNKNOWN_FIELD, "EUNKNOWN_FIELD", "field unknown to the receiver's schema"},
    {FS_EVALUE_TYPE, "EVALUE_TYPE", "value of the wrong kind for the field"},
    {FS_EVALUE_RANGE, "EVALUE_RANGE", "value out of range or too long"},
    {FS_EVALUE_ENUM, "EVALUE_ENUM", "value not among the field's allowed values"},
    {FS_EREQUIRED, "EREQUIRED", "a required field is missing or cleared"},
    {FS_EBAD_ID, "EBAD_ID", "record id of the wrong size or zero"},
    {FS_EREF, "EREF", "reference to a missing record or one of another type"},
    {FS_EAPPEND_ONLY, "EAPPEND_ONLY", "append-only record or immutable field cannot be modified"},
    {FS_EROLE, "EROLE", "the author's role does not allow this"},
    {FS_ESTALE, "ESTALE", "based on an old version: look at the current value and try again"},
    {FS_ENOT_CREATED, "ENOT_CREATED", "change to a record that was never created"},
    {FS_ECLOCK_DRIFT, "ECLOCK_DRIFT", "clock too far ahead: set the device's date and time"},
    {FS_ESEQ_GAP, "ESEQ_GAP", "device sequence has a gap: earlier changes are missing"},
    {FS_ESEQ_MISMATCH, "ESEQ_MISMATCH", "device sequence reused with different content"},
    {FS_ESCOPE, "ESCOPE", "record outside the user's scope"},
    {FS_EDUP, "EDUP", "duplicate of an applied change"},
    {FS_EREC_ABBREV, "EREC_ABBREV",
     "record abbreviation unknown or ambiguous: resend with the full record id"},
};

static const struct err_text *err_find(int code)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return &err_table[i];
    return NULL;
}

const char *fs_strerror(int code)
{
    const struct err_text *t = err_find(code);
    return t ? t->text : "unknown error";
}

const char *fs_errname(int code)
{
    const struct err_text *t = err_find(code);
    return t ? t->name : "EUNKNOWN";
}

int fs_error_set(fs_error *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}
