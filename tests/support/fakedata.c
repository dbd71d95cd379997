/*
 * fakedata.c — deterministic field data. See fakedata.h for the contract and ownership.
 *
 * Everything random comes from one xoshiro256** state per generator, seeded through
 * splitmix64, and is consumed in a fixed order, so a seed names one exact data set on every
 * machine and compiler (no floating point, no libc rand, no locale, no wall clock). Changing
 * the order of draws in this file changes every data set derived from a seed: the shipped
 * zstd dictionary (bench/train_dict.c) was trained on one such set, which is fine — it only
 * has to resemble the traffic — but tests must not assert exact generated strings.
 *
 * The vocabularies (surnames, given-name characters, towns, note templates) are small tables
 * here; notes get their variety from combining templates and filling their slots (relatives,
 * subjects, scores, illnesses, hazards, places, dates), not from a large corpus.
 */
#include "fakedata.h"

#include "hlc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_VILLAGES 60
#define MAX_KNOWN 65536
#define CHANGE_TEXT_CAP 16384 /* a visit's texts: 5 x 500 + 2000 + short ones < 6 KiB */
#define SLOT_CAP 4096

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- vocabularies --------------------------------------------------------------------- */

typedef struct county_def {
    const char *code, *name, *short_name;
    uint32_t region;
    const char *towns[4];
} county_def;

static const county_def counties[] = {
    {"wx", "巫溪县", "巫溪县", 500238, {"宁厂镇", "文峰镇", "上磺镇", "塘坊镇"}},
    {"yy", "云阳县", "云阳县", 500235, {"龙角镇", "江口镇", "南溪镇", "双土镇"}},
    {"fj", "奉节县", "奉节县", 500236, {"青龙镇", "吐祥镇", "平安乡", "红土乡"}},
    {"ws", "巫山县", "巫山县", 500237, {"大昌镇", "官渡镇", "骡坪镇", "福田镇"}},
    {"ck", "城口县", "城口县", 500229, {"高观镇", "明通镇", "修齐镇", "庙坝镇"}},
    {"ps", "彭水苗族土家族自治县", "彭水县", 500243, {"郁山镇", "保家镇", "鹿角镇", "桑柘镇"}},
    {"sz", "石柱土家族自治县", "石柱县", 500240, {"黄水镇", "西沱镇", "中益乡", "沙子镇"}},
    {"xs", "秀山土家族苗族自治县", "秀山县", 500241, {"清溪场镇", "洪安镇", "隘口镇", "梅江镇"}},
    {"kz", "开州区", "开州区", 500154, {"大进镇", "温泉镇", "谭家镇", "满月镇"}},
    {"yt", "酉阳土家族苗族自治县", "酉阳县", 500242, {"龙潭镇", "酉酬镇", "苍岭镇", "车田乡"}},
};

typedef struct village_name {
    const char *name, *initials;
} village_name;

static const village_name village_names[] = {
    {"红星村", "hx"}, {"新华村", "xh"}, {"团结村", "tj"}, {"光明村", "gm"}, {"和平村", "hp"},
    {"青山村", "qs"}, {"桃源村", "ty"}, {"石门村", "sm"}, {"龙潭村", "lt"}, {"白果村", "bg"},
    {"黄桷村", "hj"}, {"柏树村", "bs"}, {"杨柳村", "yl"}, {"大石村", "ds"}, {"高峰村", "gf"},
    {"茶园村", "cy"}, {"金竹村", "jz"}, {"双河村", "sh"}, {"三合村", "sh"}, {"长岭村", "cl"},
    {"响水村", "xs"}, {"凉水村", "ls"}, {"花园村", "hy"}, {"马鞍村", "ma"}, {"新店村", "xd"},
    {"向阳村", "xy"}, {"胜利村", "sl"}, {"平坝村", "pb"}, {"天池村", "tc"}, {"银杏村", "yx"},
    {"岩口村", "yk"}, {"庙坝村", "mb"}, {"清泉村", "qq"}, {"中坪村", "zp"}, {"观音村", "gy"},
    {"堰塘村", "yt"}, {"柳坪村", "lp"}, {"松树村", "ss"}, {"五星村", "wx"}, {"槐树村", "hs"},
    {"兴隆村", "xl"}, {"复兴村", "fx"},
};

/* Ordered by frequency: picks are skewed towards the front. */
static const char *const surnames[] = {
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
    "郭", "何", "林", "罗", "高", "谭", "冉", "向", "彭", "邓", "曾", "袁", "熊", "余", "唐",
    "蒋", "秦", "牟", "冯", "田", "谢", "程", "万", "杜", "龚", "覃", "石", "廖", "姚", "邹",
    "夏", "汪", "雷", "龙", "付",
};
static const char *const given_male[] = {
    "浩", "宇", "轩", "杰", "俊", "涛", "鹏", "磊", "强", "军", "伟", "明", "博", "文", "豪",
    "鑫", "泽", "航", "睿", "辰", "凯", "建", "勇", "超", "斌", "峰", "波", "翔", "天", "志",
    "骏", "毅", "飞", "龙", "成", "阳",
};
static const char *const given_female[] = {
    "欣", "怡", "婷", "雪", "梅", "琳", "静", "丽", "娜", "慧", "敏", "燕", "霞", "玲", "红",
    "倩", "颖", "悦", "涵", "彤", "萱", "琪", "诗", "梦", "瑶", "洁", "芳", "兰", "月", "晶",
    "妍", "露", "蕾", "秀", "英", "娟",
};
static const char *const given_any[] = {
    "子", "雨", "思", "嘉", "一", "梓", "晨", "佳", "家", "小", "春", "秋", "林", "安", "乐",
    "欣", "若", "可", "心", "星",
};

static const char *const phone_prefixes[] = {
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150",
    "151", "152", "153", "155", "156", "157", "158", "159", "166", "173", "175", "176",
    "177", "178", "180", "181", "182", "183", "184", "185", "186", "187", "188", "189",
    "191", "193", "195", "198", "199",
};

static const char *const work_cities[] = {
    "广东省东莞市长安镇", "广东省深圳市宝安区", "广东省佛山市南海区", "广东省广州市白云区",
    "浙江省宁波市北仑区", "浙江省温州市瓯海区", "浙江省义乌市", "福建省晋江市",
    "江苏省苏州市昆山市", "上海市松江区", "重庆市九龙坡区", "重庆市渝北区", "四川省成都市双流区",
    "新疆乌鲁木齐市", "北京市大兴区", "湖北省武汉市东西湖区",
};
static const char *const work_places[] = {
    "电子厂", "服装厂", "鞋厂", "家具厂", "建筑工地", "物流园", "快递站", "餐馆",
    "汽车配件厂", "玩具厂", "五金厂", "食品厂", "装修队", "煤矿", "塑料厂", "纺织厂",
};

/* colloquial relatives for notes; guardian relations for the household record */
static const char *const relatives_said[] = {"爷爷", "奶奶", "外公", "外婆", "姑姑",
                                             "舅舅", "叔叔", "姨妈", "伯伯"};
static const char *const parents_said[] = {"爸爸", "妈妈", "父母"};

/* ---- note templates -------------------------------------------------------------------
 * Slots: %G relative, %P parent, %C where parents work, %S subject, %n 2..9, %m score,
 * %I illness, %W weekday, %T teacher, %H hazard, %F food, %R house, %D recent date,
 * %K sibling, %X money. */

static const char *const frag_living[] = {
    "孩子由%G照顾，日常起居基本正常。",
    "家中为%R，屋内较整洁，厨房有基本炊具。",
    "%G年纪较大，腿脚不便，做饭主要靠孩子帮忙。",
    "早饭一般吃%F，午饭在学校吃营养餐。",
    "家里养了%n头猪和一些鸡鸭，%G平时还要下地干活。",
    "孩子的换洗衣物够用，被褥较薄，已建议添置冬被。",
    "屋顶有漏雨现象，村委会已登记纳入危房排查。",
    "家中通了自来水，厕所为旱厕，卫生条件一般。",
    "孩子在学校寄宿，每周五下午由%G接回家。",
    "%P在%C打工，每月寄回生活费约%X元。",
    "家里有电视和一部老人机，没有通网络。",
    "孩子能自己洗衣做饭，比同龄人懂事。",
    "冬天靠烧柴取暖，已提醒注意通风防止一氧化碳中毒。",
    "与%G同住，家里还有一个%n岁的%K。",
    "%D走访时孩子正在帮%G掰包谷。",
    "%G患有慢性病，照顾孩子有些吃力。",
};
static const char *const frag_safety[] = {
    "住房附近有%H，已提醒%G看管好孩子，不要独自去玩水。",
    "上学要走%n公里山路，途经%H，有一段没有护栏。",
    "家中电线老化，插座裸露，已请村电工%W上门检修。",
    "已对孩子进行防溺水、防触电、防交通事故安全教育。",
    "孩子放学后常独自在家，门窗能够锁好。",
    "未发现孩子有被打骂或被欺凌的情况。",
    "农药放在灶屋低处，已建议放到孩子够不着的地方。",
    "孩子知道遇到危险时拨打110和村干部的电话。",
    "液化气罐放在灶台旁，已指导正确使用和关阀。",
    "暑假期间孩子曾独自去%H边玩耍，已再次叮嘱。",
    "孩子能背出%G和村委会的电话号码。",
    "家门口的%H已由村里加装围栏。",
    "孩子骑自行车上公路，已劝说不要在公路上骑车。",
};
static const char *const frag_health[] = {
    "孩子身体健康，近一个月没有生病。",
    "%D患%I，已到村卫生室看过，现在基本好转。",
    "孩子偏瘦，身高体重略低于同龄人，建议加强营养。",
    "视力下降明显，已联系学校安排免费验光。",
    "已按时接种疫苗，预防接种本保存完好。",
    "孩子有哮喘病史，需长期用药，药品由%P从%C寄回。",
    "有%n颗龋齿，%G说等放假带去县医院看。",
    "孩子吃饭正常，睡眠较好，精神状态不错。",
    "手臂上有湿疹，已提醒注意个人卫生，勤换衣物。",
    "已参加城乡居民医疗保险，%G知道报销流程。",
    "左腿有旧伤，走路稍有不便，不影响上学。",
    "最近常说肚子疼，已建议到镇卫生院检查。",
};
static const char *const frag_study[] = {
    "学习成绩中等，%S较好，%S较弱。",
    "上次考试%S考了%m分，在班上排名中上。",
    "作业基本能按时完成，%G不识字，无法辅导功课。",
    "%T反映孩子上课注意力不集中，爱走神。",
    "孩子喜欢看书，家里书本较少，已联系学校借阅图书。",
    "本学期有%n天没有到校，原因是在家帮忙干农活，已劝返。",
    "放学后常看手机玩游戏，已与%G商量限制使用时间。",
    "学校安排了留守儿童课后辅导，孩子每周参加%n次。",
    "孩子说长大想当老师，学习态度端正。",
    "英语基础较差，已请%T课后多关注。",
    "孩子被评为班级三好学生，%G很高兴。",
    "%T每月家访一次，与%G保持联系。",
};
static const char *const frag_mood[] = {
    "孩子性格开朗，见到走访人员主动打招呼。",
    "孩子比较内向，说话声音小，不太愿意交流。",
    "提到%P时情绪低落，说很想%P。",
    "和同学关系融洽，有%n个要好的朋友。",
    "孩子说晚上一个人睡觉害怕，希望%P能回来过年。",
    "情绪稳定，没有发现明显异常。",
    "与%G偶有争吵，%G说孩子不太听话。",
    "孩子有些自卑，觉得别人看不起自己。",
    "每周和%P视频通话%n次，通话后心情明显好转。",
    "孩子脾气较急，在学校和同学发生过小矛盾。",
    "社工已开展%n次心理疏导，孩子愿意倾诉。",
    "孩子喜欢画画，给%P画了一张全家福。",
};
static const char *const frag_concerns[] = {
    "%G身体越来越差，监护能力不足，需持续关注。",
    "建议村委会联系%P，督促其多与孩子联系。",
    "家庭经济困难，建议申请临时救助。",
    "孩子有辍学倾向，需要学校和村委会共同做工作。",
    "房屋存在安全隐患，需尽快纳入改造计划。",
    "下次走访重点了解孩子的学习和心理状况。",
    "%P已经%n个月没有和孩子联系，电话打不通。",
    "建议将孩子列为重点关注对象，每月走访一次。",
    "孩子需要课外读物和学习用品，已联系志愿者捐赠。",
    "已向镇民政办反映情况，等待回复。",
    "暂未发现需要报告的情况。",
    "孩子的户籍和身份证信息需要再核对一次。",
    "%G提出希望帮忙申请低保，已告知办理材料。",
};
static const char *const *const frag_topics[] = {frag_living, frag_safety, frag_health,
                                                 frag_study,  frag_mood,   frag_concerns};
static const size_t frag_counts[] = {NELEM(frag_living), NELEM(frag_safety),
                                     NELEM(frag_health), NELEM(frag_study),
                                     NELEM(frag_mood),   NELEM(frag_concerns)};

/* What was observed, by report category code; then generic follow-on sentences. */
typedef struct report_text {
    const char *category;
    const char *text[2];
} report_text;

static const report_text report_texts[] = {
    {"living_alone", {"走访发现孩子独自在家居住已%n天，%G外出就医未归，家中无成年人照看。",
                      "孩子%P均在%C务工，托付的%G%D去世后，孩子一直一个人生活。"}},
    {"missing", {"孩子%W放学后未回家，%G和村干部寻找一夜无果。",
                 "孩子%D离家后一直没有消息，电话关机，%G非常着急。"}},
    {"guardian_incapacitated", {"%G突发脑溢血住院，家中无人照料孩子。",
                                "%G患重病卧床，已无法照顾孩子的饮食起居。"}},
    {"neglect", {"%G长期饮酒，不给孩子做饭，孩子多次饿着肚子上学。",
                 "%P外出后很少过问孩子，%G也不管，孩子经常在外游荡到深夜。"}},
    {"suspected_domestic_violence", {"孩子手臂和背部有多处淤青，说是被%G打的。",
                                     "邻居反映经常听到孩子哭喊，孩子脸上有伤痕。"}},
    {"suspected_injury_or_abuse", {"孩子在%H边摔伤，头部出血，已送镇卫生院处理。",
                                   "孩子反映在上学路上被陌生人拦住，受到惊吓。"}},
};
static const char *const report_follow[] = {
    "已第一时间向派出所报告。", "村干部已到现场了解情况。", "已通知孩子%P尽快返回。",
    "孩子暂由%G照看。",         "学校%T已知情。",           "需要镇里尽快组织评估。",
};

/* ---- the generator --------------------------------------------------------------------- */

typedef struct village_rec {
    fakedata_village pub;
    char code[32];
} village_rec;

typedef struct known_child {
    rid_t id;
    uint64_t last_hlc;   /* clock of the last change this generator made to it */
    uint16_t village;
    uint8_t female;
    int64_t birth;
} known_child;

typedef struct known_household {
    rid_t id;
    uint64_t last_hlc;
    uint16_t village;
    uint8_t surname;     /* index into surnames: the father's, passed to the children */
    uint8_t guardian;    /* guardian_type code index used for its children (see gtype_codes) */
} known_household;

enum slot_id {
    SLOT_NAME, SLOT_ADDRESS, SLOT_PHONE, SLOT_SCHOOL, SLOT_ID, SLOT_NOTE, N_SLOTS
};

struct fakedata {
    uint64_t s[4];                /* xoshiro256** */
    uint64_t now_ms;              /* simulated clock */
    uint64_t last_hlc;            /* greatest clock issued */
    rid_t device;
    char author[CHANGE_MAX_AUTHOR + 1];
    char role[32];
    uint64_t next_dseq;
    char visitor_name[32];        /* the device user's own name, used for most visits */
    village_rec villages[N_VILLAGES];
    char slots[N_SLOTS][SLOT_CAP];
    const char *said_guardian;    /* relative named in the notes being written, or NULL */
    const char *said_parent;      /* parent named in the notes being written, or NULL */
    char text[CHANGE_TEXT_CAP];   /* text of the change being built */
    size_t text_len;
    known_child *children;
    size_t n_children, cap_children;
    known_household *households;
    size_t n_households, cap_households, last_household; /* last: most recently created */
};

/* ---- PRNG ---------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fakedata_u64(fakedata *fd)
{
    uint64_t *s = fd->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t fakedata_below(fakedata *fd, uint32_t n)
{
    if (n == 0)
        return 0;
    return (uint32_t)(((fakedata_u64(fd) >> 32) * (uint64_t)n) >> 32);
}

bool fakedata_chance(fakedata *fd, uint32_t percent) { return fakedata_below(fd, 100) < percent; }

/* Skewed towards small indices (the min of two draws): common surnames first. */
static uint32_t below_skewed(fakedata *fd, uint32_t n)
{
    uint32_t a = fakedata_below(fd, n), b = fakedata_below(fd, n);
    return a < b ? a : b;
}

static const char *pick(fakedata *fd, const char *const *list, size_t n)
{
    return list[fakedata_below(fd, (uint32_t)n)];
}
#define PICK(fd, list) pick((fd), (list), NELEM(list))

rid_t fakedata_id(fakedata *fd, uint64_t ms)
{
    rid_t id;
    for (int i = 0; i < 6; i++)
        id.b[i] = (uint8_t)(ms >> (40 - 8 * i));
    uint64_t r1 = fakedata_u64(fd), r2 = fakedata_u64(fd);
    for (int i = 6; i < 16; i++) /* byte order independent of the host */
        id.b[i] = (uint8_t)((i < 14 ? r1 >> (8 * (i - 6)) : r2 >> (8 * (i - 14))) & 0xff);
    id.b[6] = (uint8_t)((id.b[6] & 0x0f) | 0x70);
    id.b[8] = (uint8_t)((id.b[8] & 0x3f) | 0x80);
    return id;
}

/* ---- calendar (proleptic Gregorian, days since 1970-01-01) ----------------------------- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t civil_from_days(int64_t z) /* returns YYYYMMDD */
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp + (mp < 10 ? 3 : -9);
    return (y + (m <= 2)) * 10000 + m * 100 + d;
}

/* Local (UTC+8, no DST in China) day number of a Unix ms time. */
static int64_t local_day(uint64_t ms) { return (int64_t)((ms / 1000 + 8 * 3600) / 86400); }

static bool date_ok(int64_t ymd)
{
    int64_t y = ymd / 10000, m = ymd / 100 % 100, d = ymd % 100;
    if (y < 1900 || y > 2199 || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    return civil_from_days(days_from_civil(y, m, d)) == ymd;
}

/* ---- small string builder ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t cap, len;
    bool full;
} sbuf;

static void sb_init(sbuf *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->full = false;
    if (cap)
        p[0] = '\0';
}

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_add(b, tmp);
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* ---- construction -------------------------------------------------------------------- */

static void build_villages(fakedata *fd)
{
    for (size_t i = 0; i < N_VILLAGES; i++) {
        village_rec *v = &fd->villages[i];
        size_t c = i % NELEM(counties), k = i / NELEM(counties);
        const county_def *cd = &counties[c];
        const village_name *vn = &village_names[(c * 7 + k * 5) % NELEM(village_names)];
        int nn = 1; /* villages of the county with the same initials before this one */
        for (size_t j = c; j < i; j += NELEM(counties))
            if (!strcmp(fd->villages[j].pub.name, vn->name) ||
                !strcmp(village_names[(c * 7 + (j / NELEM(counties)) * 5) %
                                      NELEM(village_names)].initials,
                        vn->initials))
                nn++;
        snprintf(v->code, sizeof v->code, "cq-%s-%s-%02d", cd->code, vn->initials, nn);
        v->pub.code = v->code;
        v->pub.name = vn->name;
        v->pub.town = cd->towns[k % 4];
        v->pub.county = cd->name;
        v->pub.county_code = cd->code;
        v->pub.region = cd->region;
    }
}

static void gen_name(fakedata *fd, int female, int surname, sbuf *b);

fakedata *fakedata_new(uint64_t seed)
{
    fakedata *fd = calloc(1, sizeof *fd);
    if (!fd)
        return NULL;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        fd->s[i] = splitmix64(&x);
    build_villages(fd);
    /* 2024-09-02 08:00 in Chongqing (UTC+8): the first week of the school year */
    fd->now_ms = (uint64_t)days_from_civil(2024, 9, 2) * 86400000ULL;
    fd->device = fakedata_id(fd, fd->now_ms - 90ULL * 86400000ULL);
    snprintf(fd->author, sizeof fd->author, "cq-visitor-%03u", fakedata_below(fd, 1000));
    snprintf(fd->role, sizeof fd->role, "visitor");
    fd->next_dseq = 1;
    sbuf b;
    sb_init(&b, fd->visitor_name, sizeof fd->visitor_name);
    gen_name(fd, -1, -1, &b);
    return fd;
}

void fakedata_free(fakedata *fd)
{
    if (!fd)
        return;
    free(fd->children);
    free(fd->households);
    free(fd);
}

uint64_t fakedata_now_ms(const fakedata *fd) { return fd->now_ms; }

void fakedata_set_now_ms(fakedata *fd, uint64_t ms) { fd->now_ms = ms; }

int fakedata_set_identity(fakedata *fd, const rid_t *device, const char *author,
                          const char *role, uint64_t next_dseq)
{
    if (!author || strlen(author) > CHANGE_MAX_AUTHOR || !role || strlen(role) >= sizeof fd->role ||
        next_dseq == 0 || !device)
        return FS_EINVAL;
    fd->device = *device;
    snprintf(fd->author, sizeof fd->author, "%s", author);
    snprintf(fd->role, sizeof fd->role, "%s", role);
    fd->next_dseq = next_dseq;
    return 0;
}

uint64_t fakedata_next_dseq(const fakedata *fd) { return fd->next_dseq; }

size_t fakedata_children_known(const fakedata *fd) { return fd->n_children; }
size_t fakedata_households_known(const fakedata *fd) { return fd->n_households; }

/* ---- scalar generators (write into an sbuf) ------------------------------------------- */

/* surname < 0: pick one. */
static void gen_name(fakedata *fd, int female, int surname, sbuf *b)
{
    if (surname < 0)
        surname = (int)below_skewed(fd, NELEM(surnames));
    sb_add(b, surnames[surname]);
    if (female < 0)
        female = (int)fakedata_below(fd, 2);
    const char *const *own = female ? given_female : given_male;
    size_t n_own = female ? NELEM(given_female) : NELEM(given_male);
    int chars = fakedata_chance(fd, 65) ? 2 : 1;
    const char *prev = NULL;
    for (int i = 0; i < chars; i++) {
        const char *c;
        if (fakedata_chance(fd, 25))
            c = PICK(fd, given_any);
        else
            c = pick(fd, own, n_own);
        /* no accidental repeats, except the girls' reduplicated names (婷婷, 欣欣) */
        if (prev && c == prev && !(female && fakedata_chance(fd, 50)))
            c = pick(fd, own, n_own);
        sb_add(b, c);
        prev = c;
    }
}

/* The short county name for school names (石柱县, not 石柱土家族自治县). Looked up by code so
 * that a caller's own fakedata_village works too. */
static const char *short_county(const fakedata_village *v)
{
    for (size_t i = 0; i < NELEM(counties); i++)
        if (v->county_code && !strcmp(counties[i].code, v->county_code))
            return counties[i].short_name;
    return v->county;
}

static void gen_address(fakedata *fd, const fakedata_village *v, sbuf *b)
{
    sb_fmt(b, "重庆市%s%s%s", v->county, v->town, v->name);
    uint32_t form = fakedata_below(fd, 10);
    uint32_t zu = 1 + fakedata_below(fd, 12), hao = 1 + fakedata_below(fd, 68);
    static const char *const landmarks[] = {"村委会旁", "村小学后面", "老桥头", "大湾",
                                            "半坡上", "公路边", "河坝", "垭口"};
    if (form < 6)
        sb_fmt(b, "%u组%u号", zu, hao);
    else if (form < 8)
        sb_fmt(b, "%u社%u号", zu, hao);
    else
        sb_fmt(b, "%u组（%s）", zu, PICK(fd, landmarks));
}

/* Draws are sequenced one per statement: the order in which a compiler evaluates function
 * arguments is unspecified, and gcc and clang differ, which would make a seed's data depend
 * on the compiler. */
static void gen_work_place(fakedata *fd, sbuf *b)
{
    const char *city = PICK(fd, work_cities);
    const char *place = PICK(fd, work_places);
    sb_fmt(b, "%s%s", city, place);
}

static void gen_phone(fakedata *fd, sbuf *b)
{
    sb_add(b, PICK(fd, phone_prefixes));
    for (int i = 0; i < 8; i++)
        sb_fmt(b, "%u", fakedata_below(fd, 10));
}

static void gen_school(fakedata *fd, const fakedata_village *v, int grade, sbuf *b)
{
    const char *c = short_county(v);
    if (grade <= 0) {
        if (fakedata_chance(fd, 70))
            sb_fmt(b, "%s%s中心幼儿园", c, v->town);
        else
            sb_fmt(b, "%s%s%s幼儿园", c, v->town, v->name);
    } else if (grade <= 6) {
        uint32_t k = fakedata_below(fd, 10);
        if (grade <= 3 && k < 3)
            sb_fmt(b, "%s%s%s小学", c, v->town, v->name); /* 村小 */
        else if (k < 8)
            sb_fmt(b, "%s%s中心小学", c, v->town);
        else
            sb_fmt(b, "%s%s九年一贯制学校", c, v->town);
    } else if (grade <= 9) {
        uint32_t k = fakedata_below(fd, 10);
        if (k < 5)
            sb_fmt(b, "%s%s初级中学", c, v->town);
        else if (k < 8)
            sb_fmt(b, "%s%s中学", c, v->town);
        else
            sb_fmt(b, "%s%s九年一贯制学校", c, v->town);
    } else {
        static const char *const hs[] = {"第一中学", "中学", "职业教育中心", "民族中学"};
        sb_fmt(b, "%s%s", c, PICK(fd, hs));
    }
}

int64_t fakedata_birth_date(fakedata *fd)
{
    int64_t today = local_day(fd->now_ms);
    /* 183 days .. 16 years minus 31 days */
    int64_t age_days = 183 + (int64_t)fakedata_below(fd, 16 * 365 + 3 - 31 - 183);
    return civil_from_days(today - age_days);
}

int fakedata_grade_for(const fakedata *fd, int64_t birth)
{
    int64_t today = civil_from_days(local_day(fd->now_ms));
    int64_t y = today / 10000, m = today / 100 % 100;
    int64_t school_year = m >= 9 ? y : y - 1;
    int64_t by = birth / 10000, bm = birth / 100 % 100;
    int64_t age_at_sep1 = school_year - by - (bm >= 9 ? 1 : 0);
    int64_t g = age_at_sep1 - 5; /* six by 31 August: first grade */
    if (g < 0)
        g = 0;
    if (g > 12)
        g = 12;
    return (int)g;
}

static void gen_id_number(fakedata *fd, const fakedata_village *v, int64_t birth, bool female,
                          sbuf *b)
{
    char id[19];
    uint32_t seq = fakedata_below(fd, 500) * 2 + (female ? 0 : 1); /* 17th digit: gender */
    snprintf(id, sizeof id, "%06u%08lld%03u", v->region % 1000000u, (long long)birth, seq);
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int i = 0; i < 17; i++)
        sum += (id[i] - '0') * w[i];
    id[17] = "10X98765432"[sum % 11];
    id[18] = '\0';
    sb_add(b, id);
}

bool fakedata_id_number_valid(const char *id)
{
    static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    if (!id || strlen(id) != 18)
        return false;
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        if (id[i] < '0' || id[i] > '9')
            return false;
        sum += (id[i] - '0') * w[i];
    }
    if (id[17] != "10X98765432"[sum % 11])
        return false;
    int64_t birth = 0;
    for (int i = 6; i < 14; i++)
        birth = birth * 10 + (id[i] - '0');
    return date_ok(birth);
}

/* Expands one template's slots into b. */
static void expand(fakedata *fd, const char *t, sbuf *b)
{
    static const char *const places[] = {"广东", "浙江", "福建", "江苏", "上海", "深圳",
                                         "东莞", "新疆", "成都", "主城"};
    static const char *const subjects[] = {"语文", "数学", "英语", "科学", "道德与法治"};
    static const char *const illnesses[] = {"感冒", "咳嗽", "发烧", "腹泻", "扁桃体发炎",
                                            "支气管炎", "水痘", "手足口病", "中耳炎"};
    static const char *const weekdays[] = {"周一", "周二", "周三", "周四",
                                           "周五", "周六", "周日"};
    static const char *const teachers[] = {"班主任", "数学老师", "语文老师", "英语老师",
                                           "校长", "生活老师"};
    static const char *const hazards[] = {"鱼塘", "河沟", "水井", "堰塘", "陡坡",
                                          "公路", "高压电线", "水库", "悬崖"};
    static const char *const foods[] = {"面条", "米饭", "洋芋", "红苕", "稀饭",
                                        "鸡蛋", "馒头", "包谷饭"};
    static const char *const houses[] = {"两层砖混房", "土坯房", "木结构老房", "新建安置房",
                                         "一楼一底的砖房"};
    static const char *const siblings[] = {"弟弟", "妹妹", "哥哥", "姐姐"};
    const char *subject_used = NULL;
    char tmp[512];
    size_t n = 0;
    for (const char *p = t; *p && n + 1 < sizeof tmp;) {
        if (*p != '%' || !p[1]) {
            tmp[n++] = *p++;
            continue;
        }
        char code = p[1];
        p += 2;
        const char *s = NULL;
        char num[32];
        switch (code) {
        /* one visit speaks of one guardian and mostly one parent */
        case 'G':
            s = fd->said_guardian && fakedata_chance(fd, 90) ? fd->said_guardian
                                                             : PICK(fd, relatives_said);
            break;
        case 'P':
            s = fd->said_parent && fakedata_chance(fd, 80) ? fd->said_parent
                                                           : PICK(fd, parents_said);
            break;
        case 'C': s = PICK(fd, places); break;
        case 'S':
            do
                s = PICK(fd, subjects);
            while (s == subject_used);
            subject_used = s;
            break;
        case 'n': /* a count: 2..9 */
            snprintf(num, sizeof num, "%u", 2 + fakedata_below(fd, 8));
            s = num;
            break;
        case 'm': /* a test score: 55..98 */
            snprintf(num, sizeof num, "%u", 55 + fakedata_below(fd, 44));
            s = num;
            break;
        case 'X': /* yuan a month: 300..1500 */
            snprintf(num, sizeof num, "%u", 300 + 100 * fakedata_below(fd, 13));
            s = num;
            break;
        case 'I': s = PICK(fd, illnesses); break;
        case 'W': s = PICK(fd, weekdays); break;
        case 'T': s = PICK(fd, teachers); break;
        case 'H': s = PICK(fd, hazards); break;
        case 'F': s = PICK(fd, foods); break;
        case 'R': s = PICK(fd, houses); break;
        case 'K': s = PICK(fd, siblings); break;
        case 'D': {
            int64_t d = civil_from_days(local_day(fd->now_ms) - 1 - fakedata_below(fd, 20));
            snprintf(num, sizeof num, "%d月%d日", (int)(d / 100 % 100), (int)(d % 100));
            s = num;
            break;
        }
        default: s = "";
        }
        size_t l = strlen(s);
        if (n + l + 1 > sizeof tmp)
            break;
        memcpy(tmp + n, s, l);
        n += l;
    }
    tmp[n] = '\0';
    sb_add(b, tmp);
}

/* A note of min_chars..max_chars characters (the target is skewed short: field notes are
 * terse), at most max_bytes bytes. */
static void gen_note(fakedata *fd, fakedata_topic topic, size_t max_bytes, uint32_t min_chars,
                     uint32_t max_chars, sbuf *out)
{
    size_t cap = out->cap - out->len - 1;
    if (max_bytes > cap)
        max_bytes = cap;
    uint32_t span = max_chars - min_chars + 1;
    uint32_t a = fakedata_below(fd, span), bb = fakedata_below(fd, span);
    size_t target = min_chars + (a < bb ? a : bb);
    uint64_t used[NELEM(frag_counts)] = {0}; /* bit k of used[t]: template k of topic t */
    size_t start = out->len, chars = 0;
    int misses = 0;
    while (chars < target && misses < 12) {
        int t = topic == FAKEDATA_ANY ? (int)fakedata_below(fd, 6) : (int)topic;
        /* a topical note borrows a sentence from another topic now and then */
        if (topic != FAKEDATA_ANY && fakedata_chance(fd, 10))
            t = (int)fakedata_below(fd, 6);
        uint32_t k = fakedata_below(fd, (uint32_t)frag_counts[t]);
        if (used[t] >> k & 1) {
            misses++;
            continue;
        }
        char tmp[640];
        sbuf f;
        sb_init(&f, tmp, sizeof tmp);
        expand(fd, frag_topics[t][k], &f);
        if (out->len - start + f.len > max_bytes) {
            misses++;
            continue;
        }
        used[t] |= 1ull << k;
        sb_add(out, tmp);
        chars += utf8_chars(tmp, f.len);
    }
}

/* ---- public scalar functions ---------------------------------------------------------- */

static sbuf slot(fakedata *fd, enum slot_id id)
{
    sbuf b;
    sb_init(&b, fd->slots[id], SLOT_CAP);
    return b;
}

const char *fakedata_person_name(fakedata *fd, int female)
{
    sbuf b = slot(fd, SLOT_NAME);
    gen_name(fd, female, -1, &b);
    return b.p;
}

size_t fakedata_village_count(const fakedata *fd)
{
    (void)fd;
    return N_VILLAGES;
}

const fakedata_village *fakedata_village_at(const fakedata *fd, size_t i)
{
    return i < N_VILLAGES ? &fd->villages[i].pub : NULL;
}

const fakedata_village *fakedata_village_pick(fakedata *fd)
{
    return &fd->villages[fakedata_below(fd, N_VILLAGES)].pub;
}

const char *fakedata_address(fakedata *fd, const fakedata_village *v)
{
    if (!v)
        v = fakedata_village_pick(fd);
    sbuf b = slot(fd, SLOT_ADDRESS);
    gen_address(fd, v, &b);
    return b.p;
}

const char *fakedata_phone(fakedata *fd)
{
    sbuf b = slot(fd, SLOT_PHONE);
    gen_phone(fd, &b);
    return b.p;
}

const char *fakedata_school(fakedata *fd, const fakedata_village *v, int grade)
{
    if (!v)
        v = fakedata_village_pick(fd);
    sbuf b = slot(fd, SLOT_SCHOOL);
    gen_school(fd, v, grade, &b);
    return b.p;
}

const char *fakedata_id_number(fakedata *fd, const fakedata_village *v, int64_t birth,
                               bool female)
{
    if (!v)
        v = fakedata_village_pick(fd);
    sbuf b = slot(fd, SLOT_ID);
    gen_id_number(fd, v, birth, female, &b);
    return b.p;
}

const char *fakedata_note(fakedata *fd, fakedata_topic topic, size_t max_bytes)
{
    if ((int)topic < 0 || topic >= FAKEDATA_N_TOPICS)
        topic = FAKEDATA_ANY;
    sbuf b = slot(fd, SLOT_NOTE);
    fd->said_guardian = PICK(fd, relatives_said);
    fd->said_parent = PICK(fd, parents_said);
    gen_note(fd, topic, max_bytes, 30, 300, &b);
    return b.p;
}

size_t fakedata_fragment_count(void)
{
    size_t n = 0;
    for (size_t i = 0; i < NELEM(frag_counts); i++)
        n += frag_counts[i];
    return n;
}

/* ---- remembered records ---------------------------------------------------------------- */

static int remember(void **arr, size_t *n, size_t *cap, size_t *next_slot, size_t size,
                    const void *item, fakedata *fd)
{
    if (*n < MAX_KNOWN) {
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            void *p = realloc(*arr, nc * size);
            if (!p)
                return FS_ENOMEM;
            *arr = p;
            *cap = nc;
        }
        *next_slot = (*n)++;
    } else {
        *next_slot = fakedata_below(fd, MAX_KNOWN); /* full: forget a random one */
    }
    memcpy((char *)*arr + *next_slot * size, item, size);
    return 0;
}

static known_child *find_child(fakedata *fd, const rid_t *id)
{
    for (size_t i = fd->n_children; i-- > 0;)
        if (!memcmp(fd->children[i].id.b, id->b, 16))
            return &fd->children[i];
    return NULL;
}

static known_child *random_child(fakedata *fd)
{
    if (!fd->n_children)
        return NULL;
    return &fd->children[fakedata_below(fd, (uint32_t)fd->n_children)];
}

static int village_index(const fakedata *fd, const fakedata_village *v)
{
    for (int i = 0; i < N_VILLAGES; i++)
        if (&fd->villages[i].pub == v || !strcmp(fd->villages[i].code, v->code))
            return i;
    return -1;
}

/* ---- change building -------------------------------------------------------------------- */

typedef struct bctx {
    fakedata *fd;
    const schema *s;
    const schema_type *t;
    change *c;
    fs_error *e;
    int rc; /* first error; setters do nothing once it is set */
} bctx;

static uint64_t tick(fakedata *fd)
{
    fd->now_ms += 20000 + fakedata_below(fd, 2380000); /* 20 s .. 40 min */
    uint64_t h = hlc_make(fd->now_ms, 0);
    if (h <= fd->last_hlc)
        h = fd->last_hlc + 1;
    fd->last_hlc = h;
    return h;
}

static int begin(bctx *b, fakedata *fd, const schema *s, const char *type, change *c,
                 fs_error *e)
{
    memset(b, 0, sizeof *b);
    b->fd = fd;
    b->s = s;
    b->c = c;
    b->e = e;
    fd->text_len = 0;
    memset(c, 0, offsetof(change, fields));
    if (!s)
        return b->rc = fs_error_set(e, FS_EINVAL, "fakedata: no schema");
    b->t = schema_type_by_name(s, type);
    if (!b->t)
        return b->rc = fs_error_set(e, FS_ESCHEMA, "fakedata: schema has no type '%s'", type);
    int role = schema_role_by_name(s, fd->role);
    if (role < 0)
        return b->rc = fs_error_set(e, FS_ESCHEMA, "fakedata: schema has no role '%s'",
                                    fd->role);
    c->type = b->t->id;
    c->hlc = tick(fd);
    c->record = fakedata_id(fd, hlc_physical_ms(c->hlc));
    c->base = 0;
    c->device = fd->device;
    c->author = fd->author;
    c->author_len = (uint32_t)strlen(fd->author);
    c->role = (uint8_t)role;
    fd->said_guardian = PICK(fd, relatives_said);
    fd->said_parent = PICK(fd, parents_said);
    return 0;
}

static const schema_field *field(bctx *b, const char *name)
{
    if (b->rc)
        return NULL;
    const schema_field *f = schema_field_by_name(b->t, name);
    if (!f) {
        b->rc = fs_error_set(b->e, FS_ESCHEMA, "fakedata: type '%s' has no field '%s'",
                             b->t->name, name);
        return NULL;
    }
    if (b->c->n_fields >= CHANGE_MAX_FIELDS) {
        b->rc = fs_error_set(b->e, FS_EINVAL, "fakedata: too many fields");
        return NULL;
    }
    return f;
}

static fs_value *add(bctx *b, const schema_field *f, uint8_t kind)
{
    change_field *cf = &b->c->fields[b->c->n_fields++];
    memset(cf, 0, sizeof *cf);
    cf->num = f->num;
    cf->v.kind = kind;
    return &cf->v;
}

/* Copies text into the change buffer, cut to the field's max_len at a character boundary. */
static void put_str(bctx *b, const char *name, const char *text)
{
    const schema_field *f = field(b, name);
    if (!f)
        return;
    size_t n = strlen(text);
    if (n > f->max_len) {
        n = f->max_len;
        while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
            n--;
    }
    fakedata *fd = b->fd;
    if (fd->text_len + n + 1 > sizeof fd->text) {
        b->rc = fs_error_set(b->e, FS_EINVAL, "fakedata: change text over %zu bytes",
                             sizeof fd->text);
        return;
    }
    char *p = fd->text + fd->text_len;
    memcpy(p, text, n);
    p[n] = '\0';
    fd->text_len += n + 1;
    fs_value *v = add(b, f, VAL_STR);
    v->u.s.p = p;
    v->u.s.len = (uint32_t)n;
}

static void put_int(bctx *b, const char *name, int64_t i)
{
    const schema_field *f = field(b, name);
    if (f)
        add(b, f, VAL_INT)->u.i = i;
}

static void put_bool(bctx *b, const char *name, bool x)
{
    const schema_field *f = field(b, name);
    if (f)
        add(b, f, VAL_BOOL)->u.b = x;
}

static void put_ref(bctx *b, const char *name, const rid_t *id)
{
    const schema_field *f = field(b, name);
    if (f)
        add(b, f, VAL_REF)->u.ref = *id;
}

static int enum_index(bctx *b, const schema_field *f, const char *code)
{
    int i = schema_enum_by_code(f, code);
    if (i < 0)
        b->rc = fs_error_set(b->e, FS_ESCHEMA, "fakedata: field '%s' has no value '%s'",
                             f->name, code);
    return i;
}

static void put_enum(bctx *b, const char *name, const char *code)
{
    const schema_field *f = field(b, name);
    if (!f)
        return;
    int i = enum_index(b, f, code);
    if (i >= 0)
        add(b, f, VAL_INT)->u.i = i;
}

static void put_set_add(bctx *b, const char *name, const char *code)
{
    const schema_field *f = field(b, name);
    if (!f)
        return;
    int i = enum_index(b, f, code);
    if (i >= 0)
        add(b, f, VAL_SET)->u.set.add = 1ull << i;
}

/* Picks a code from codes[] with the given percentages (summing to 100). */
static const char *weighted(fakedata *fd, const char *const *codes, const uint8_t *pct, size_t n)
{
    uint32_t x = fakedata_below(fd, 100), acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += pct[i];
        if (x < acc)
            return codes[i];
    }
    return codes[n - 1];
}
#define WEIGHTED(fd, codes, pct) weighted((fd), (codes), (pct), NELEM(codes))

static int finish(bctx *b, rid_t *id_out)
{
    if (b->rc)
        return b->rc;
    change *c = b->c;
    if (change_sort_fields(c))
        return fs_error_set(b->e, FS_EINVAL, "fakedata: a field was set twice (bug)");
    c->dseq = b->fd->next_dseq;
    int rc = change_validate(b->s, c, b->e);
    if (rc)
        return rc;
    b->fd->next_dseq++;
    if (id_out)
        *id_out = c->record;
    return 0;
}

/* Writes text generated into a stack buffer through put_str. */
#define PUT_GEN(b, name, gen_call)                                                          \
    do {                                                                                   \
        char tmp_[SLOT_CAP];                                                               \
        sbuf sb_;                                                                          \
        sb_init(&sb_, tmp_, sizeof tmp_);                                                  \
        gen_call;                                                                          \
        put_str((b), (name), tmp_);                                                        \
    } while (0)

static size_t max_len_of(bctx *b, const char *name)
{
    const schema_field *f = b->rc ? NULL : schema_field_by_name(b->t, name);
    return f ? f->max_len : 0;
}

/* guardian types, as codes of child.guardian_type, and the relations each implies */
static const char *const gtype_codes[] = {"grandparent", "relative", "entrusted", "none"};
static const uint8_t gtype_pct[] = {75, 15, 7, 3};

int fakedata_household_create(fakedata *fd, const schema *s, const fakedata_village *v,
                              change *out, rid_t *id_out, fs_error *e)
{
    bctx b;
    if (begin(&b, fd, s, "household", out, e))
        return b.rc;
    if (!v)
        v = fakedata_village_pick(fd);
    int vi = village_index(fd, v);
    if (vi < 0)
        return fs_error_set(e, FS_EINVAL, "fakedata: village '%s' is not one of the generator's",
                            v->code);
    int surname = (int)below_skewed(fd, NELEM(surnames));
    int msurname;
    do
        msurname = (int)below_skewed(fd, NELEM(surnames));
    while (msurname == surname);
    static const char *const migrant[] = {"both_away", "father_away", "mother_away",
                                          "none_away"};
    static const uint8_t migrant_pct[] = {60, 25, 10, 5};
    const char *ms = WEIGHTED(fd, migrant, migrant_pct);
    bool father_away = !strcmp(ms, "both_away") || !strcmp(ms, "father_away");
    bool mother_away = !strcmp(ms, "both_away") || !strcmp(ms, "mother_away");
    uint32_t gt = 0;
    const char *gcode = WEIGHTED(fd, gtype_codes, gtype_pct);
    while (strcmp(gtype_codes[gt], gcode))
        gt++;

    put_str(&b, "village", v->code);
    if (fakedata_chance(fd, 95))
        PUT_GEN(&b, "address", gen_address(fd, v, &sb_));
    if (fakedata_chance(fd, 92))
        PUT_GEN(&b, "father_name", gen_name(fd, 0, surname, &sb_));
    if (fakedata_chance(fd, 85))
        PUT_GEN(&b, "father_phone", gen_phone(fd, &sb_));
    if (father_away && fakedata_chance(fd, 85))
        PUT_GEN(&b, "father_work_place", gen_work_place(fd, &sb_));
    if (fakedata_chance(fd, 90))
        PUT_GEN(&b, "mother_name", gen_name(fd, 1, msurname, &sb_));
    if (fakedata_chance(fd, 80))
        PUT_GEN(&b, "mother_phone", gen_phone(fd, &sb_));
    if (mother_away && fakedata_chance(fd, 80))
        PUT_GEN(&b, "mother_work_place", gen_work_place(fd, &sb_));
    put_enum(&b, "migrant_status", ms);
    if (strcmp(gcode, "none")) {
        /* relation, and whether the guardian carries the father's surname and is a woman */
        static const struct { const char *rel; int gt; bool paternal, female; } rels[] = {
            {"祖父", 0, true, false},  {"祖母", 0, false, true},  {"外祖父", 0, false, false},
            {"外祖母", 0, false, true}, {"叔叔", 1, true, false},  {"伯父", 1, true, false},
            {"姑姑", 1, true, true},   {"舅舅", 1, false, false}, {"姨妈", 1, false, true},
            {"邻居", 2, false, false}, {"邻居", 2, false, true},  {"村民", 2, false, true},
        };
        uint32_t k;
        do
            k = fakedata_below(fd, NELEM(rels));
        while (rels[k].gt != (int)gt);
        PUT_GEN(&b, "guardian_name",
                gen_name(fd, rels[k].female, rels[k].paternal ? surname : -1, &sb_));
        put_str(&b, "guardian_relation", rels[k].rel);
        if (fakedata_chance(fd, 70))
            PUT_GEN(&b, "guardian_phone", gen_phone(fd, &sb_));
        static const char *const cap[] = {"capable", "limited", "incapable"};
        static const uint8_t cap_pct[] = {70, 25, 5};
        put_enum(&b, "guardian_capacity", WEIGHTED(fd, cap, cap_pct));
    }
    if (father_away || mother_away)
        put_bool(&b, "entrusted_agreement_signed", fakedata_chance(fd, 60));
    int rc = finish(&b, id_out);
    if (rc)
        return rc;
    known_household kh = {.id = out->record, .last_hlc = out->hlc, .village = (uint16_t)vi,
                          .surname = (uint8_t)surname, .guardian = (uint8_t)gt};
    size_t slot_i;
    if (remember((void **)&fd->households, &fd->n_households, &fd->cap_households, &slot_i,
                 sizeof kh, &kh, fd))
        return fs_error_set(e, FS_ENOMEM, "fakedata: out of memory");
    fd->last_household = slot_i; /* the most recent one, for siblings */
    return 0;
}

int fakedata_child_create(fakedata *fd, const schema *s, change *out, rid_t *id_out,
                          fs_error *e)
{
    bctx b;
    if (begin(&b, fd, s, "child", out, e))
        return b.rc;
    const known_household *h = NULL;
    if (fd->n_households && fakedata_chance(fd, 85))
        h = fakedata_chance(fd, 50)
                ? &fd->households[fd->last_household]
                : &fd->households[fakedata_below(fd, (uint32_t)fd->n_households)];
    int vi = h ? h->village : (int)fakedata_below(fd, N_VILLAGES);
    const fakedata_village *v = &fd->villages[vi].pub;
    int surname = h ? h->surname : (int)below_skewed(fd, NELEM(surnames));
    const char *gcode = h ? gtype_codes[h->guardian] : WEIGHTED(fd, gtype_codes, gtype_pct);
    bool female = fakedata_chance(fd, 50);
    int64_t birth = fakedata_birth_date(fd);
    int grade = fakedata_grade_for(fd, birth);

    PUT_GEN(&b, "name", gen_name(fd, female, surname, &sb_));
    put_enum(&b, "gender", female ? "female" : "male");
    if (fakedata_chance(fd, 95))
        put_int(&b, "birth_date", birth);
    if (fakedata_chance(fd, 80))
        PUT_GEN(&b, "id_number", gen_id_number(fd, v, birth, female, &sb_));
    if (h)
        put_ref(&b, "household", &h->id);
    put_str(&b, "village", v->code);
    if (grade > 0 || fakedata_chance(fd, 50))
        PUT_GEN(&b, "school", gen_school(fd, v, grade, &sb_));
    if (fakedata_chance(fd, 90))
        put_int(&b, "grade", grade);
    static const char *const cat[] = {"both_parents_away", "one_away_other_incapable"};
    static const uint8_t cat_pct[] = {85, 15};
    if (fakedata_chance(fd, 95))
        put_enum(&b, "category", WEIGHTED(fd, cat, cat_pct));
    put_enum(&b, "guardian_type", gcode);
    if (fakedata_chance(fd, 70))
        put_bool(&b, "in_difficulty", fakedata_chance(fd, 25));
    if (fakedata_chance(fd, 60))
        put_bool(&b, "disabled", fakedata_chance(fd, 3));
    if (fakedata_chance(fd, 50))
        put_bool(&b, "dropped_out", grade >= 7 && fakedata_chance(fd, 8));
    static const char *const risk[] = {"low", "medium", "high"};
    static const uint8_t risk_pct[] = {80, 15, 5};
    if (fakedata_chance(fd, 90))
        put_enum(&b, "risk_level", WEIGHTED(fd, risk, risk_pct));
    if (fakedata_chance(fd, 95))
        put_enum(&b, "status", "on_file");
    if (fakedata_chance(fd, 10)) {
        static const char *const svc[] = {"guardianship_guidance", "psychological_counseling",
                                          "social_assistance", "medical_treatment"};
        put_set_add(&b, "services_received", PICK(fd, svc));
    }
    int rc = finish(&b, id_out);
    if (rc)
        return rc;
    known_child kc = {.id = out->record, .last_hlc = out->hlc, .village = (uint16_t)vi,
                      .female = female, .birth = birth};
    size_t slot_i;
    if (remember((void **)&fd->children, &fd->n_children, &fd->cap_children, &slot_i,
                 sizeof kc, &kc, fd))
        return fs_error_set(e, FS_ENOMEM, "fakedata: out of memory");
    return 0;
}

/* The child a visit or report is about: given, remembered, or a fresh id. */
static void about_child(fakedata *fd, const rid_t *child, rid_t *id, int *village)
{
    const known_child *kc = child ? find_child(fd, child) : random_child(fd);
    if (kc) {
        *id = kc->id;
        *village = kc->village;
    } else {
        *id = child ? *child : fakedata_id(fd, fd->now_ms - 86400000ULL);
        *village = (int)fakedata_below(fd, N_VILLAGES);
    }
}

int fakedata_visit_create(fakedata *fd, const schema *s, const rid_t *child, change *out,
                          rid_t *id_out, fs_error *e)
{
    bctx b;
    if (begin(&b, fd, s, "visit", out, e))
        return b.rc;
    rid_t cid;
    int vi;
    about_child(fd, child, &cid, &vi);
    const fakedata_village *v = &fd->villages[vi].pub;
    int64_t now_s = (int64_t)(fd->now_ms / 1000);

    put_ref(&b, "child", &cid);
    if (fakedata_chance(fd, 85))
        put_str(&b, "visitor_name", fd->visitor_name);
    else
        PUT_GEN(&b, "visitor_name", gen_name(fd, -1, -1, &sb_));
    static const char *const kinds[] = {"home_visit", "village_visit", "social_worker_followup",
                                        "school_home_visit"};
    static const uint8_t kind_pct[] = {50, 20, 15, 15};
    put_enum(&b, "kind", WEIGHTED(fd, kinds, kind_pct));
    put_int(&b, "visited_at", now_s - (int64_t)fakedata_below(fd, 5400));
    if (fakedata_chance(fd, 80)) {
        static const char *const where[] = {"家中", "家中", "家中", "村委会", "田间地头",
                                            "学校", "院坝里"};
        uint32_t zu = 1 + fakedata_below(fd, 12);
        const char *spot = PICK(fd, where);
        PUT_GEN(&b, "place", sb_fmt(&sb_, "%s%u组%s", v->name, zu, spot));
    }
    static const struct { const char *field; fakedata_topic topic; uint8_t pct; } obs[] = {
        {"living_situation", FAKEDATA_LIVING, 90}, {"safety", FAKEDATA_SAFETY, 80},
        {"health", FAKEDATA_HEALTH, 80},           {"study", FAKEDATA_STUDY, 75},
        {"mood", FAKEDATA_MOOD, 85},
    };
    for (size_t i = 0; i < NELEM(obs); i++)
        if (fakedata_chance(fd, obs[i].pct))
            PUT_GEN(&b, obs[i].field,
                    gen_note(fd, obs[i].topic, max_len_of(&b, obs[i].field), 10, 150, &sb_));
    if (fakedata_chance(fd, 70))
        put_bool(&b, "parent_contact_arranged", fakedata_chance(fd, 60));
    if (fakedata_chance(fd, 60))
        PUT_GEN(&b, "concerns",
                gen_note(fd, FAKEDATA_CONCERNS, max_len_of(&b, "concerns"), 10, 200, &sb_));
    if (fakedata_chance(fd, 70))
        put_int(&b, "follow_up_due",
                civil_from_days(local_day(fd->now_ms) + 14 + fakedata_below(fd, 77)));
    return finish(&b, id_out);
}

int fakedata_report_create(fakedata *fd, const schema *s, const rid_t *child, change *out,
                           rid_t *id_out, fs_error *e)
{
    bctx b;
    if (begin(&b, fd, s, "report", out, e))
        return b.rc;
    rid_t cid;
    int vi;
    about_child(fd, child, &cid, &vi);
    const report_text *rt = &report_texts[fakedata_below(fd, NELEM(report_texts))];

    put_ref(&b, "child", &cid);
    if (fakedata_chance(fd, 80))
        put_str(&b, "reporter_name", fd->visitor_name);
    else
        PUT_GEN(&b, "reporter_name", gen_name(fd, -1, -1, &sb_));
    static const char *const orgs[] = {"village_committee", "school", "medical_institution",
                                       "social_work_agency", "other_citizen"};
    static const uint8_t org_pct[] = {45, 25, 5, 10, 15};
    put_enum(&b, "reporter_org", WEIGHTED(fd, orgs, org_pct));
    put_enum(&b, "category", rt->category);
    {
        char tmp[SLOT_CAP];
        sbuf sb;
        sb_init(&sb, tmp, sizeof tmp);
        expand(fd, rt->text[fakedata_below(fd, 2)], &sb);
        uint32_t more = 1 + fakedata_below(fd, 2);
        uint32_t first = fakedata_below(fd, NELEM(report_follow));
        for (uint32_t i = 0; i < more; i++)
            expand(fd, report_follow[(first + i * 2) % NELEM(report_follow)], &sb);
        put_str(&b, "observed", tmp);
    }
    put_int(&b, "observed_at", (int64_t)(fd->now_ms / 1000) - fakedata_below(fd, 6 * 3600));
    if (fakedata_chance(fd, 90))
        put_bool(&b, "police_notified", fakedata_chance(fd, 85));
    put_enum(&b, "status", "reported");
    (void)vi;
    return finish(&b, id_out);
}

/* A new value for field f of a child edit. */
static void edit_value(bctx *b, const schema_field *f, const known_child *kc)
{
    fakedata *fd = b->fd;
    const fakedata_village *v =
        kc ? &fd->villages[kc->village].pub : &fd->villages[fakedata_below(fd, N_VILLAGES)].pub;
    switch (f->kind) {
    case KIND_TEXT:
        if (!strcmp(f->name, "school")) {
            int g = kc ? fakedata_grade_for(fd, kc->birth) : 1 + (int)fakedata_below(fd, 9);
            PUT_GEN(b, f->name, gen_school(fd, v, g, &sb_));
        } else if (!strcmp(f->name, "id_number")) {
            int64_t birth = kc ? kc->birth : fakedata_birth_date(fd);
            PUT_GEN(b, f->name, gen_id_number(fd, v, birth, kc && kc->female, &sb_));
        } else if (!strcmp(f->name, "name")) {
            PUT_GEN(b, f->name, gen_name(fd, kc ? kc->female : -1, -1, &sb_));
        } else if (strstr(f->name, "phone")) {
            PUT_GEN(b, f->name, gen_phone(fd, &sb_));
        } else {
            PUT_GEN(b, f->name, gen_note(fd, FAKEDATA_ANY, f->max_len, 10, 150, &sb_));
        }
        break;
    case KIND_SCOPE: put_str(b, f->name, v->code); break;
    case KIND_INT: {
        int64_t x;
        if (!strcmp(f->name, "grade") && kc)
            x = fakedata_grade_for(fd, kc->birth) + (fakedata_chance(fd, 50) ? 1 : 0);
        else
            x = f->min + (int64_t)fakedata_below(fd, (uint32_t)(f->max - f->min + 1));
        put_int(b, f->name, x < f->min ? f->min : x > f->max ? f->max : x);
        break;
    }
    case KIND_DATE: put_int(b, f->name, kc ? kc->birth : fakedata_birth_date(fd)); break;
    case KIND_TIME: put_int(b, f->name, (int64_t)(fd->now_ms / 1000)); break;
    case KIND_BOOL: put_bool(b, f->name, fakedata_chance(fd, 30)); break;
    case KIND_ENUM: {
        /* values any role may set: a visitor's device must not produce refusals */
        uint32_t open = 0;
        for (uint32_t i = 0; i < f->n_values; i++)
            open += f->values[i].roles == 0;
        if (!open) {
            b->rc = fs_error_set(b->e, FS_EINVAL, "fakedata: every value of '%s' is restricted",
                                 f->name);
            return;
        }
        uint32_t k = fakedata_below(fd, open), i = 0;
        for (;; i++)
            if (f->values[i].roles == 0 && k-- == 0)
                break;
        put_int(b, f->name, i);
        break;
    }
    case KIND_SET: {
        const schema_field *ff = field(b, f->name);
        if (ff)
            add(b, ff, VAL_SET)->u.set.add = 1ull << fakedata_below(fd, f->n_values);
        break;
    }
    case KIND_REF:
        b->rc = fs_error_set(b->e, FS_EINVAL, "fakedata: no edit generator for ref '%s'",
                             f->name);
        break;
    }
}

int fakedata_child_edit(fakedata *fd, const schema *s, const rid_t *child, uint64_t base_hint,
                        const char *field_name, change *out, fs_error *e)
{
    known_child *kc = child ? find_child(fd, child) : random_child(fd);
    if (!child && !kc)
        return fs_error_set(e, FS_EINVAL, "fakedata: no child created yet to edit");
    if (!kc && base_hint == 0)
        return fs_error_set(e, FS_EINVAL, "fakedata: unknown child and no base clock");
    bctx b;
    if (begin(&b, fd, s, "child", out, e))
        return b.rc;
    out->record = kc ? kc->id : *child;
    out->base = kc ? kc->last_hlc : base_hint;
    if (out->base >= out->hlc) /* a caller's hint from the future: move past it */
        out->hlc = fd->last_hlc = out->base + 1;
    if (!field_name) {
        static const char *const fields[] = {"school",   "grade",         "guardian_type",
                                             "category", "status",        "in_difficulty",
                                             "disabled", "dropped_out"};
        static const uint8_t pct[] = {25, 25, 15, 5, 10, 10, 5, 5};
        field_name = WEIGHTED(fd, fields, pct);
    }
    const schema_field *f = schema_field_by_name(b.t, field_name);
    if (!f)
        return fs_error_set(e, FS_ESCHEMA, "fakedata: type 'child' has no field '%s'",
                            field_name);
    edit_value(&b, f, kc);
    int rc = finish(&b, NULL);
    if (rc)
        return rc;
    if (kc)
        kc->last_hlc = out->hlc;
    return 0;
}
