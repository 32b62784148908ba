/*
 * xtk/xtk.h - everything libxtk exports.  See libxtk(3).
 */
#ifndef XTK_XTK_H
#define XTK_XTK_H

#include <xtk/log.h>
#include <xtk/ctx.h>
#include <xtk/stream.h>
#include <xtk/stats.h>
#include <xtk/domain.h>
#include <xtk/save.h>
#include <xtk/restore.h>

#endif /* XTK_XTK_H */
