// Chinese by default, English on request. Problems from the API come already worded in
// the asked language (Accept-Language), so these strings cover only the pages' own text.
// The language choice (not a secret) is remembered in localStorage.

const zh = {
  'app.scan': '诸葛英才卡 · 核验核销', 'brand.name': '诸葛英才卡', 'brand.scan': '核验核销', 'brand.console': '管理后台', 'app.console': '诸葛英才卡 · 管理后台', 'app.city': '南阳市人才工作领导小组办公室',
  'lang.switch': 'English', 'lang.label': '切换语言',
  'signin.title': '登录', 'signin.wrongapp': '此账号（{role}）不能使用本页面',  'signin.username': '用户名', 'signin.password': '密码', 'signin.submit': '登录',
  'signin.again': '登录已失效，请重新登录。页面上已填写的内容会保留。', 'signout': '退出登录',
  'pw.title': '首次登录请修改初始密码', 'pw.current': '当前密码', 'pw.new': '新密码', 'pw.repeat': '再次输入新密码',
  'pw.submit': '修改密码', 'pw.mismatch': '两次输入的新密码不一致', 'pw.hint': '至少 10 个字符。',
  'net.error': '网络异常，请检查网络后重试', 'busy': '处理中…', 'close': '关闭', 'cancel': '取消', 'confirm': '确定',
  'save': '保存', 'edit': '编辑', 'create': '新建', 'search': '搜索', 'more': '加载更多', 'none': '暂无数据',
  'reason': '原因', 'status': '状态', 'actions': '操作', 'time': '时间', 'loading': '加载中…',
  // scanner
  'scan.camera': '摄像头扫码', 'scan.start': '打开摄像头', 'scan.stop': '关闭摄像头',
  'scan.manual': '扫码枪或手动输入二维码内容', 'scan.manual.go': '核验', 'scan.aim': '将英才卡二维码对准取景框',
  'scan.nocamera': '无法打开摄像头，可使用扫码枪或手动输入。', 'scan.verifying': '正在核验…',
  'scan.next': '继续扫码', 'scan.benefits': '可用权益', 'scan.nobenefits': '本单位暂无该卡可用的权益',
  'scan.redeem': '核销', 'scan.remaining': '剩余 {n} 次', 'scan.unlimited': '不限次数', 'scan.resets': '{t} 重置',
  'scan.redeemed': '核销成功', 'scan.retrying': '网络不稳定，正在重试（第 {n} 次），不会重复核销…',
  'scan.failed': '核销未完成：网络无法连接。请检查网络后点“重试”，不会重复核销。', 'scan.retry': '重试',
  'scan.today': '今日本台核销', 'scan.void': '撤销', 'scan.void.reason': '撤销原因', 'scan.voided': '已撤销',
  'scan.card': '卡号', 'scan.holder': '持卡人', 'scan.tier': '层次', 'scan.category': '类别', 'scan.valid': '有效期至',
  'scan.refused': '核验未通过', 'scan.staff': '本单位工作人员', 'scan.stats': '本单位统计', 'scan.stats.today': '今日',
  'scan.stats.month': '本月', 'scan.staff.new': '新增工作人员', 'scan.role': '角色', 'scan.enable': '启用', 'scan.disable': '停用',
  'scan.initialpw': '初始密码', 'scan.tab.scan': '扫码核销', 'scan.tab.today': '今日记录', 'scan.tab.staff': '人员', 'scan.tab.stats': '统计',
  // console
  'nav.dashboard': '概览', 'nav.applications': '申请审核', 'nav.cards': '英才卡', 'nav.partners': '合作单位',
  'nav.users': '管理员', 'nav.audit': '审计日志', 'nav.stats': '统计', 'nav.keys': '签名密钥',
  'dash.today': '今日核销', 'dash.month': '本月核销', 'dash.pending': '待审核申请', 'dash.byday': '近 30 天核销',
  'dash.bypartner': '按合作单位', 'dash.bytier': '按层次',
  'app.queue': '待审核', 'app.name': '姓名', 'app.idno': '身份证号', 'app.employer': '工作单位', 'app.education': '学历',
  'app.title': '职称', 'app.claimed': '申报层次', 'app.docs': '证明材料', 'app.reveal': '查看完整信息（记入审计）',
  'app.approve': '批准并发卡', 'app.reject': '驳回', 'app.years': '有效期（年）', 'app.submitted': '提交时间', 'app.nodocs': '未上传材料',
  'cards.query': '卡号、姓名或身份证号', 'cards.suspend': '暂停', 'cards.resume': '恢复', 'cards.revoke': '注销',
  'cards.renew': '续期', 'cards.events': '变更记录', 'cards.from': '生效', 'cards.until': '有效期至',
  'partners.new': '新建合作单位', 'partners.name': '名称', 'partners.category': '类型', 'partners.district': '区县',
  'partners.address': '地址', 'partners.lat': '纬度', 'partners.lng': '经度', 'partners.phone': '电话',
  'partners.hours': '开放时间', 'partners.desc': '简介', 'partners.benefits': '权益', 'partners.staff': '工作人员',
  'partners.deactivate': '停用', 'partners.activate': '启用',
  'benefit.new': '新建权益', 'benefit.title': '权益名称', 'benefit.tiers': '适用层次', 'benefit.categories': '适用类别（不选为全部）',
  'benefit.quota': '次数', 'benefit.period': '周期', 'benefit.offline': '允许离线核销', 'benefit.validfrom': '生效时间',
  'users.new': '新建管理员', 'users.role': '角色', 'users.resetpw': '重置密码',
  'audit.verify': '校验哈希链', 'audit.intact': '哈希链完整（{n} 条）', 'audit.broken': '哈希链在第 {n} 条断开',
  'audit.actor': '操作人', 'audit.action': '操作', 'audit.target': '对象',
  'stats.from': '开始日期', 'stats.to': '结束日期', 'stats.csv': '导出 CSV', 'stats.count': '次数', 'stats.day': '日期',
  'keys.rotate': '轮换二维码签名密钥', 'keys.rotated': '已启用新密钥 {kid}', 'keys.explain': '新密钥立即用于签发二维码；旧公钥继续发布，直到它签发的二维码全部过期。',
  'confirm.sure': '确定执行此操作？',
  'pw.reset': '重置密码', 'pw.reset.hint': '已随机生成，可修改；对方首次登录须改为自己的密码。', 'pw.reset.done': '已重置 {who} 的密码。请当面告知此初始密码（只显示这一次）：',
  'card.reveal': '查看姓名、身份证号和手机号（记入审计）', 'card.name': '姓名', 'card.idno': '身份证号', 'card.phone': '手机号', 'card.nophone': '未绑定',
  'users.changerole': '修改角色', 'users.role.done': '{who} 的角色已改为 {role}，其登录已失效。',
  'partners.deactivate.confirm': '停用后该单位不再出现在目录中，也不能核销；记录保留，可再次启用。', 'benefit.deactivate.confirm': '停用后不能再核销此权益；已有核销记录保留，可编辑为启用。',
  'benefit.validity': '有效期', 'benefit.validuntil': '截止日期（含当日，不填为长期）', 'benefit.always': '长期',
  'audit.source': '来源', 'audit.src.chain': '操作记录（哈希链）', 'audit.src.redemptions': '核销记录', 'audit.src.verifications': '验卡记录',
  'audit.actor_id': '操作人 ID', 'audit.target_type': '对象类型', 'audit.target_id': '对象 ID', 'audit.partner_id': '合作单位 ID', 'audit.card_id': '英才卡 ID',
  'audit.filter': '筛选', 'audit.clear': '清除筛选', 'audit.uuid': '须为完整的 ID（UUID）',
  // enums
  'tier.A': 'A 国内外顶尖人才', 'tier.B': 'B 国家级领军人才', 'tier.C': 'C 省级领军人才', 'tier.D': 'D 市级领军人才', 'tier.E': 'E 优秀青年/高技能人才',
  'cat.sci_tech': '科技创新', 'cat.enterprise': '企业经营管理', 'cat.youth': '青年大学生', 'cat.skilled': '技能人才',
  'cat.rural': '农村实用人才', 'cat.social': '社会事业', 'cat.civil': '党政人才',
  'cs.active': '正常', 'cs.suspended': '已暂停', 'cs.revoked': '已注销', 'cs.expired': '已过期',
  'as.submitted': '待审核', 'as.approved': '已批准', 'as.rejected': '已驳回', 'as.withdrawn': '已撤回',
  'st.active': '启用', 'st.inactive': '停用', 'st.disabled': '停用', 'st.completed': '已核销', 'st.voided': '已撤销',
  'period.day': '每天', 'period.week': '每周', 'period.month': '每月', 'period.quarter': '每季度', 'period.year': '每年',
  'period.lifetime': '终身', 'period.unlimited': '不限',
  'pc.hospital': '医院', 'pc.school': '学校', 'pc.apartment': '人才公寓', 'pc.scenic': '景区', 'pc.transport': '交通',
  'pc.finance': '金融', 'pc.culture': '文化', 'pc.sport': '体育', 'pc.elderly_care': '养老', 'pc.service_center': '人才之家', 'pc.other': '其他',
  'role.talent': '人才', 'role.merchant_staff': '工作人员', 'role.merchant_manager': '负责人', 'role.reviewer': '审核员',
  'role.operator': '运营管理员', 'role.super_admin': '超级管理员', 'role.cli': '命令行', 'role.system': '系统',
  'ev.issued': '发卡', 'ev.suspended': '暂停', 'ev.resumed': '恢复', 'ev.revoked': '注销', 'ev.renewed': '续期', 'ev.changed': '变更',
};

const en = {
  'app.scan': 'Zhuge Talent Card · Scan & redeem', 'brand.name': 'Zhuge Talent Card', 'brand.scan': 'Scan & redeem', 'brand.console': 'Console', 'app.console': 'Zhuge Talent Card · Console', 'app.city': 'Nanyang Talent Office',
  'lang.switch': '中文', 'lang.label': 'Switch language',
  'signin.title': 'Sign in', 'signin.wrongapp': 'This account ({role}) cannot use this page',  'signin.username': 'Username', 'signin.password': 'Password', 'signin.submit': 'Sign in',
  'signin.again': 'Your session ended. Sign in again; what you typed on the page is kept.', 'signout': 'Sign out',
  'pw.title': 'Change your initial password', 'pw.current': 'Current password', 'pw.new': 'New password', 'pw.repeat': 'Repeat new password',
  'pw.submit': 'Change password', 'pw.mismatch': 'The new passwords differ', 'pw.hint': 'At least 10 characters.',
  'net.error': 'Network problem; check the connection and try again', 'busy': 'Working…', 'close': 'Close', 'cancel': 'Cancel', 'confirm': 'OK',
  'save': 'Save', 'edit': 'Edit', 'create': 'New', 'search': 'Search', 'more': 'Load more', 'none': 'Nothing yet',
  'reason': 'Reason', 'status': 'Status', 'actions': 'Actions', 'time': 'Time', 'loading': 'Loading…',
  'scan.camera': 'Camera', 'scan.start': 'Start camera', 'scan.stop': 'Stop camera',
  'scan.manual': 'Barcode scanner or typed QR text', 'scan.manual.go': 'Verify', 'scan.aim': 'Hold the card QR inside the frame',
  'scan.nocamera': 'The camera is not available; use a barcode scanner or type the code.', 'scan.verifying': 'Verifying…',
  'scan.next': 'Scan next', 'scan.benefits': 'Benefits available', 'scan.nobenefits': 'No benefit of this partner applies to this card',
  'scan.redeem': 'Redeem', 'scan.remaining': '{n} left', 'scan.unlimited': 'Unlimited', 'scan.resets': 'resets {t}',
  'scan.redeemed': 'Redeemed', 'scan.retrying': 'Network unstable; retrying (attempt {n}). It will not be redeemed twice…',
  'scan.failed': 'Not confirmed: the network is down. Check it and press Retry; it will not be redeemed twice.', 'scan.retry': 'Retry',
  'scan.today': "Today's redemptions at this desk", 'scan.void': 'Void', 'scan.void.reason': 'Reason for voiding', 'scan.voided': 'Voided',
  'scan.card': 'Card no.', 'scan.holder': 'Holder', 'scan.tier': 'Tier', 'scan.category': 'Category', 'scan.valid': 'Valid until',
  'scan.refused': 'Not accepted', 'scan.staff': 'Staff of this partner', 'scan.stats': 'Statistics', 'scan.stats.today': 'Today',
  'scan.stats.month': 'This month', 'scan.staff.new': 'Add staff', 'scan.role': 'Role', 'scan.enable': 'Enable', 'scan.disable': 'Disable',
  'scan.initialpw': 'Initial password', 'scan.tab.scan': 'Scan', 'scan.tab.today': 'Today', 'scan.tab.staff': 'Staff', 'scan.tab.stats': 'Stats',
  'nav.dashboard': 'Dashboard', 'nav.applications': 'Applications', 'nav.cards': 'Cards', 'nav.partners': 'Partners',
  'nav.users': 'Admins', 'nav.audit': 'Audit log', 'nav.stats': 'Statistics', 'nav.keys': 'Signing keys',
  'dash.today': 'Redemptions today', 'dash.month': 'This month', 'dash.pending': 'Applications waiting', 'dash.byday': 'Last 30 days',
  'dash.bypartner': 'By partner', 'dash.bytier': 'By tier',
  'app.queue': 'Waiting', 'app.name': 'Name', 'app.idno': 'ID number', 'app.employer': 'Employer', 'app.education': 'Education',
  'app.title': 'Title', 'app.claimed': 'Claimed tier', 'app.docs': 'Documents', 'app.reveal': 'Reveal full details (audited)',
  'app.approve': 'Approve and issue', 'app.reject': 'Reject', 'app.years': 'Validity (years)', 'app.submitted': 'Submitted', 'app.nodocs': 'No documents',
  'cards.query': 'Card no., name or ID number', 'cards.suspend': 'Suspend', 'cards.resume': 'Resume', 'cards.revoke': 'Revoke',
  'cards.renew': 'Renew', 'cards.events': 'History', 'cards.from': 'Valid from', 'cards.until': 'Valid until',
  'partners.new': 'New partner', 'partners.name': 'Name', 'partners.category': 'Category', 'partners.district': 'District',
  'partners.address': 'Address', 'partners.lat': 'Latitude', 'partners.lng': 'Longitude', 'partners.phone': 'Phone',
  'partners.hours': 'Opening hours', 'partners.desc': 'Description', 'partners.benefits': 'Benefits', 'partners.staff': 'Staff',
  'partners.deactivate': 'Deactivate', 'partners.activate': 'Activate',
  'benefit.new': 'New benefit', 'benefit.title': 'Title', 'benefit.tiers': 'Tiers', 'benefit.categories': 'Categories (none = all)',
  'benefit.quota': 'Uses', 'benefit.period': 'Period', 'benefit.offline': 'Offline redemption allowed', 'benefit.validfrom': 'Valid from',
  'users.new': 'New admin', 'users.role': 'Role', 'users.resetpw': 'Reset password',
  'audit.verify': 'Verify the hash chain', 'audit.intact': 'Chain intact ({n} entries)', 'audit.broken': 'Chain broken at entry {n}',
  'audit.actor': 'Actor', 'audit.action': 'Action', 'audit.target': 'Target',
  'stats.from': 'From', 'stats.to': 'To', 'stats.csv': 'Export CSV', 'stats.count': 'Count', 'stats.day': 'Day',
  'keys.rotate': 'Rotate the QR signing key', 'keys.rotated': 'New key {kid} in use', 'keys.explain': 'The new key signs QR codes at once; the old public key stays published until every code it signed has expired.',
  'confirm.sure': 'Are you sure?',
  'pw.reset': 'Reset password', 'pw.reset.hint': 'Generated at random; you may change it. It must be changed at the next sign-in.', 'pw.reset.done': 'Password of {who} reset. Hand over this initial password in person (shown only this once):',
  'card.reveal': 'Reveal name, ID number and phone (audited)', 'card.name': 'Name', 'card.idno': 'ID number', 'card.phone': 'Phone', 'card.nophone': 'None bound',
  'users.changerole': 'Change role', 'users.role.done': '{who} is now {role}; their sessions have ended.',
  'partners.deactivate.confirm': 'The partner leaves the catalogue and cannot redeem; its records stay and it can be activated again.', 'benefit.deactivate.confirm': 'The benefit can no longer be redeemed; its records stay and it can be made active again by editing.',
  'benefit.validity': 'Validity', 'benefit.validuntil': 'Last day (inclusive; empty = no end)', 'benefit.always': 'no end',
  'audit.source': 'Source', 'audit.src.chain': 'Actions (hash chain)', 'audit.src.redemptions': 'Redemptions', 'audit.src.verifications': 'Card checks',
  'audit.actor_id': 'Actor ID', 'audit.target_type': 'Target type', 'audit.target_id': 'Target ID', 'audit.partner_id': 'Partner ID', 'audit.card_id': 'Card ID',
  'audit.filter': 'Filter', 'audit.clear': 'Clear filters', 'audit.uuid': 'A whole ID (UUID)',
  'tier.A': 'A World-leading', 'tier.B': 'B National leader', 'tier.C': 'C Provincial leader', 'tier.D': 'D City leader', 'tier.E': 'E Young / high-skill',
  'cat.sci_tech': 'Science & technology', 'cat.enterprise': 'Enterprise management', 'cat.youth': 'Young graduates', 'cat.skilled': 'Skilled workers',
  'cat.rural': 'Rural experts', 'cat.social': 'Public services', 'cat.civil': 'Civil service',
  'cs.active': 'Active', 'cs.suspended': 'Suspended', 'cs.revoked': 'Revoked', 'cs.expired': 'Expired',
  'as.submitted': 'Waiting', 'as.approved': 'Approved', 'as.rejected': 'Rejected', 'as.withdrawn': 'Withdrawn',
  'st.active': 'Active', 'st.inactive': 'Inactive', 'st.disabled': 'Disabled', 'st.completed': 'Redeemed', 'st.voided': 'Voided',
  'period.day': 'per day', 'period.week': 'per week', 'period.month': 'per month', 'period.quarter': 'per quarter', 'period.year': 'per year',
  'period.lifetime': 'lifetime', 'period.unlimited': 'unlimited',
  'pc.hospital': 'Hospital', 'pc.school': 'School', 'pc.apartment': 'Talent apartment', 'pc.scenic': 'Scenic spot', 'pc.transport': 'Transport',
  'pc.finance': 'Finance', 'pc.culture': 'Culture', 'pc.sport': 'Sport', 'pc.elderly_care': 'Elderly care', 'pc.service_center': 'Service centre', 'pc.other': 'Other',
  'role.talent': 'Talent', 'role.merchant_staff': 'Staff', 'role.merchant_manager': 'Manager', 'role.reviewer': 'Reviewer',
  'role.operator': 'Operator', 'role.super_admin': 'Super admin', 'role.cli': 'CLI', 'role.system': 'System',
  'ev.issued': 'Issued', 'ev.suspended': 'Suspended', 'ev.resumed': 'Resumed', 'ev.revoked': 'Revoked', 'ev.renewed': 'Renewed', 'ev.changed': 'Changed',
};

const dicts = { zh, en };
let lang = localStorage.getItem('zhuge.lang') === 'en' ? 'en' : 'zh';
const listeners = [];

export function getLang() { return lang; }

export function t(key, vars = {}) {
  // An unknown enum value (a role or event the pages do not know yet) shows as sent.
  const s = dicts[lang][key] ?? zh[key] ?? key.slice(key.indexOf('.') + 1);
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ''));
}

export function onLangChange(fn) { listeners.push(fn); }

export function toggleLang() {
  lang = lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('zhuge.lang', lang);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  applyI18n(document);
  for (const fn of listeners) fn();
}

/** Fills `data-i18n` (text), `data-i18n-ph` (placeholder) and `data-i18n-label` (aria-label). */
export function applyI18n(root) {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
}

const fmtCache = {};
/** A time in Beijing, as the city reads it. */
export function fmtTime(iso, withDate = true) {
  if (!iso) return '';
  const k = lang + withDate;
  fmtCache[k] ??= new Intl.DateTimeFormat(lang === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit', hour12: false,
    ...(withDate ? { year: 'numeric', month: '2-digit', day: '2-digit' } : {}),
  });
  return fmtCache[k].format(new Date(iso));
}

export function fmtDate(iso) {
  if (!iso) return '';
  return new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai' }).format(new Date(iso));
}

/** Today's date in Beijing, `YYYY-MM-DD`. */
export function beijingToday() { return fmtDate(new Date().toISOString()); }
