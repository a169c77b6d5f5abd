//! Demo mode: realistic Nanyang partners and benefits, an admin, a merchant manager and
//! staff, and a talent holding a card — and WeChat's servers played by the stand-in on
//! this same server, so the real client code runs end to end. Never in production.

use entity::user;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::accounts::service::{NewAccount, create};
use crate::applications::dto::{Approve, NewApplication};
use crate::audit::Actor;
use crate::auth::Role;
use crate::catalog::dto::{BenefitInput, District, PartnerCategory, PartnerInput, Status};
use crate::catalog::period::Period;
use crate::classification::{Category, Tier};
use crate::state::AppState;
use crate::{applications, catalog, db};

pub const APPID: &str = "wx_demo_app";
pub const SECRET: &str = "demo-secret";
pub const ADMIN: (&str, &str) = ("demo.admin", "Demo-admin-2026");
pub const REVIEWER: (&str, &str) = ("demo.reviewer", "Demo-reviewer-2026");
pub const MANAGER: (&str, &str) = ("demo.manager", "Demo-manager-2026");
pub const STAFF: (&str, &str) = ("demo.staff", "Demo-staff-2026");
/// `wx.login` codes starting with this sign in as the demo talent (`demo-talent.1`, …).
pub const TALENT_CODE: &str = "demo-talent";

/// A demo benefit: title, description, tiers, quota (None: unlimited) and period.
type DemoBenefit = (&'static str, &'static str, &'static [Tier], Option<i32>, Period);

struct Place {
    name: &'static str,
    category: PartnerCategory,
    district: District,
    address: &'static str,
    lat: f64,
    lng: f64,
    benefits: &'static [DemoBenefit],
}

const ALL: &[Tier] = &[Tier::A, Tier::B, Tier::C, Tier::D, Tier::E];
const TOP: &[Tier] = &[Tier::A, Tier::B, Tier::C];

const PLACES: &[Place] = &[
    Place {
        name: "南阳市中心医院",
        category: PartnerCategory::Hospital,
        district: District::Wolong,
        address: "卧龙区工业路 312 号",
        lat: 32.9987,
        lng: 112.5283,
        benefits: &[
            ("就医绿色通道", "专家号优先预约、优先就诊", ALL, Some(6), Period::Year),
            ("年度健康体检", "免费高端体检一次", TOP, Some(1), Period::Year),
        ],
    },
    Place {
        name: "南阳市第一人民医院",
        category: PartnerCategory::Hospital,
        district: District::Wancheng,
        address: "宛城区人民路 12 号",
        lat: 32.9947,
        lng: 112.5402,
        benefits: &[("就医绿色通道", "门诊、住院优先安排", ALL, Some(12), Period::Year)],
    },
    Place {
        name: "南阳市第十五小学",
        category: PartnerCategory::School,
        district: District::Wolong,
        address: "卧龙区范蠡路 66 号",
        lat: 33.0101,
        lng: 112.5105,
        benefits: &[("子女入学服务", "人才子女就近入学协调", ALL, Some(1), Period::Lifetime)],
    },
    Place {
        name: "南阳人才公寓（高新区）",
        category: PartnerCategory::Apartment,
        district: District::Wancheng,
        address: "宛城区张衡路 1999 号",
        lat: 32.9802,
        lng: 112.5701,
        benefits: &[("租金减免", "人才公寓租金八折", ALL, Some(1), Period::Month)],
    },
    Place {
        name: "卧龙岗武侯祠",
        category: PartnerCategory::Scenic,
        district: District::Wolong,
        address: "卧龙区卧龙路 1 号",
        lat: 33.0139,
        lng: 112.4911,
        benefits: &[("免费游览", "持卡人才本人免门票", ALL, None, Period::Unlimited)],
    },
    Place {
        name: "西峡老界岭景区",
        category: PartnerCategory::Scenic,
        district: District::Xixia,
        address: "西峡县太平镇",
        lat: 33.5622,
        lng: 111.6911,
        benefits: &[("门票优惠", "景区门票免费", ALL, Some(2), Period::Year)],
    },
    Place {
        name: "内乡县衙",
        category: PartnerCategory::Culture,
        district: District::Neixiang,
        address: "内乡县城关镇县衙路",
        lat: 33.0467,
        lng: 111.8511,
        benefits: &[("免费参观", "持卡免费参观", ALL, None, Period::Unlimited)],
    },
    Place {
        name: "中原银行南阳分行",
        category: PartnerCategory::Finance,
        district: District::Wancheng,
        address: "宛城区光武路 8 号",
        lat: 32.9901,
        lng: 112.5455,
        benefits: &[("人才贷", "人才信用贷款绿色审批", TOP, Some(1), Period::Year)],
    },
    Place {
        name: "诸葛书屋（卧龙店）",
        category: PartnerCategory::Culture,
        district: District::Wolong,
        address: "卧龙区七一路 20 号",
        lat: 33.0021,
        lng: 112.5233,
        benefits: &[("图书借阅", "免押金借阅", ALL, Some(4), Period::Month)],
    },
    Place {
        name: "邓州市人才之家",
        category: PartnerCategory::ServiceCenter,
        district: District::Dengzhou,
        address: "邓州市新华路 88 号",
        lat: 32.6878,
        lng: 112.0872,
        benefits: &[("政策咨询", "一对一人才政策服务", ALL, None, Period::Unlimited)],
    },
    Place {
        name: "南阳市公交集团",
        category: PartnerCategory::Transport,
        district: District::Wolong,
        address: "卧龙区车站路 5 号",
        lat: 33.0050,
        lng: 112.5350,
        benefits: &[("公交出行", "市内公交免费乘坐", &[Tier::D, Tier::E], Some(60), Period::Month)],
    },
    Place {
        name: "唐河县体育中心",
        category: PartnerCategory::Sport,
        district: District::Tanghe,
        address: "唐河县滨河路",
        lat: 32.6811,
        lng: 112.8381,
        benefits: &[("健身场馆", "场馆免费开放", ALL, Some(8), Period::Week)],
    },
    Place {
        name: "淅川县康养中心",
        category: PartnerCategory::ElderlyCare,
        district: District::Xichuan,
        address: "淅川县丹阳路",
        lat: 33.1370,
        lng: 111.4900,
        benefits: &[("父母康养", "人才父母康养服务优惠", TOP, Some(4), Period::Quarter)],
    },
    Place {
        name: "南召县人民医院",
        category: PartnerCategory::Hospital,
        district: District::Nanzhao,
        address: "南召县城关镇人民路",
        lat: 33.4889,
        lng: 112.4297,
        benefits: &[("就医绿色通道", "挂号、检查优先", ALL, Some(6), Period::Year)],
    },
    Place {
        name: "方城县第一高级中学",
        category: PartnerCategory::School,
        district: District::Fangcheng,
        address: "方城县凤瑞路",
        lat: 33.2553,
        lng: 113.0122,
        benefits: &[("子女入学服务", "人才子女入学协调", TOP, Some(1), Period::Lifetime)],
    },
    Place {
        name: "镇平玉文化博物馆",
        category: PartnerCategory::Culture,
        district: District::Zhenping,
        address: "镇平县玉都大道",
        lat: 33.0344,
        lng: 112.2344,
        benefits: &[("免费参观", "持卡免费参观", ALL, None, Period::Unlimited)],
    },
    Place {
        name: "社旗山陕会馆",
        category: PartnerCategory::Scenic,
        district: District::Sheqi,
        address: "社旗县赊店镇",
        lat: 33.0558,
        lng: 112.9378,
        benefits: &[("门票优惠", "门票免费", ALL, Some(2), Period::Year)],
    },
    Place {
        name: "新野县人才公寓",
        category: PartnerCategory::Apartment,
        district: District::Xinye,
        address: "新野县汉城路",
        lat: 32.5222,
        lng: 112.3600,
        benefits: &[("租金减免", "租金七折", &[Tier::C, Tier::D, Tier::E], Some(1), Period::Month)],
    },
    Place {
        name: "桐柏淮源景区",
        category: PartnerCategory::Scenic,
        district: District::Tongbai,
        address: "桐柏县淮源镇",
        lat: 32.3789,
        lng: 113.4286,
        benefits: &[("门票优惠", "门票免费", ALL, Some(2), Period::Year)],
    },
];

/// Seeds the demo data once; later starts find it and change nothing.
pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    if user::Entity::find().filter(user::Column::Username.eq(ADMIN.0)).one(&state.db).await?.is_some() {
        return Ok(());
    }
    let cli = Actor::cli();
    let now = state.clock.now();
    let txn = db::begin_write(&state.db).await?;
    for (who, role) in [(ADMIN, Role::SuperAdmin), (REVIEWER, Role::Reviewer)] {
        create(
            &txn,
            &state.keyring,
            &cli,
            NewAccount { username: who.0, password: who.1, role, partner_id: None, must_change_password: false },
            now,
        )
        .await
        .map_err(api)?;
    }
    txn.commit().await?;

    let mut first_partner = None;
    for place in PLACES {
        let input = PartnerInput {
            name: Some(place.name.into()),
            category: Some(place.category),
            district: Some(place.district),
            address: Some(place.address.into()),
            lat: Some(place.lat),
            lng: Some(place.lng),
            phone: Some("0377-63200000".into()),
            opening_hours: Some("08:00-17:30".into()),
            description: Some(format!("{}：诸葛英才卡合作单位", place.name)),
            status: Some(Status::Active),
        };
        let partner = catalog::service::create_partner(state, &cli, input).await.map_err(api)?;
        first_partner.get_or_insert(partner.id);
        for (title, description, tiers, quota, period) in place.benefits {
            let input = BenefitInput {
                title: Some((*title).into()),
                description: Some((*description).into()),
                tiers: Some(tiers.to_vec()),
                categories: None,
                quota: *quota,
                period: Some(*period),
                valid_from: Some(now - chrono::Duration::days(1)),
                valid_until: None,
                status: Some(Status::Active),
                offline_ok: Some(false),
            };
            catalog::service::create_benefit(state, &cli, partner.id, input).await.map_err(api)?;
        }
    }

    let hospital = first_partner.ok_or_else(|| anyhow::anyhow!("no partner seeded"))?;
    let txn = db::begin_write(&state.db).await?;
    for (who, role) in [(MANAGER, Role::MerchantManager), (STAFF, Role::MerchantStaff)] {
        create(
            &txn,
            &state.keyring,
            &cli,
            NewAccount { username: who.0, password: who.1, role, partner_id: Some(hospital), must_change_password: false },
            now,
        )
        .await
        .map_err(api)?;
    }
    // The talent, as a first WeChat sign-in would have created them.
    let talent = user::ActiveModel {
        wechat_openid: sea_orm::ActiveValue::Set(Some(format!("oid_{TALENT_CODE}"))),
        ..crate::accounts::service::new_row(Role::Talent, now)
    };
    let talent = sea_orm::ActiveModelTrait::insert(talent, &txn).await?;
    txn.commit().await?;

    let application = NewApplication {
        real_name: "诸葛明".into(),
        id_number: "411302199001011236".into(),
        employer: "南阳理工学院".into(),
        category: Category::SciTech,
        claimed_tier: Tier::B,
        education: "博士研究生".into(),
        title: "教授".into(),
        document_ids: Vec::new(),
    };
    let submitted = applications::service::submit(state, talent.id, application).await.map_err(api)?;
    let approve = Approve { tier: Tier::B, category: Category::SciTech, valid_years: Some(3) };
    applications::service::approve(state, &cli, submitted.id, &approve).await.map_err(api)?;
    Ok(())
}

fn api(e: crate::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// What `serve --demo` prints.
pub fn banner(base: &str) -> String {
    format!(
        "\n诸葛英才卡 demo is running at {base}\n\
         API docs:     {base}/docs/\n\
         super admin:  {} / {}\n\
         reviewer:     {} / {}\n\
         manager:      {} / {}   (南阳市中心医院)\n\
         staff:        {} / {}   (南阳市中心医院)\n\
         talent:       POST {base}/api/v1/auth/wechat/login {{\"code\": \"{TALENT_CODE}.1\"}}  (any suffix; each code works once)\n\
         WeChat is played by the stand-in at {base}/_wechat\n",
        ADMIN.0, ADMIN.1, REVIEWER.0, REVIEWER.1, MANAGER.0, MANAGER.1, STAFF.0, STAFF.1
    )
}
